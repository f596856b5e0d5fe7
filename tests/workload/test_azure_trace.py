import numpy as np
import pytest

from loratwin.errors import InputError
from loratwin.workload import load_azure_trace

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"

SAMPLE = [
    "2023-11-16 18:15:46.6805900,374,44",
    "2023-11-16 18:15:50.9951690,396,109",
    "2023-11-16 18:15:51.0000000,879,0",
    "2023-11-16 18:16:01.5,91,12",
]


def write(tmp_path, rows, header=HEADER):
    path = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_times_are_seconds_from_the_first_row_and_lengths_are_kept(tmp_path):
    workload, table = load_azure_trace(write(tmp_path, SAMPLE), n_adapters=3)
    assert table.arrival_s.tolist() == pytest.approx([0.0, 4.314579, 4.31941, 14.81941], abs=1e-9)
    assert table.prompt_tokens.tolist() == [374, 396, 879, 91]
    assert table.output_tokens.tolist() == [44, 109, 1, 12]  # a request yields at least one token
    assert [adapter.id for adapter in workload.adapters] == ["lora-0", "lora-1", "lora-2"]
    counts = np.bincount(table.adapter, minlength=3)
    assert [adapter.rate_req_s for adapter in workload.adapters] == pytest.approx(counts / 14.81941)


def test_utc_offsets_t_separator_and_blank_lines_are_tolerated(tmp_path):
    rows = ["2024-05-10 00:00:00.009930+00:00,10,5", "", "2024-05-10T00:00:01.5+00:00,20,6"]
    _, table = load_azure_trace(write(tmp_path, rows), n_adapters=1)
    assert table.arrival_s.tolist() == pytest.approx([0.0, 1.49007])


def synthetic_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-11-16T18:00:00", "ns")
    stamps = start + np.cumsum(rng.exponential(0.1, n) * 1e9).astype("timedelta64[ns]")
    return [f"{str(stamp).replace('T', ' ')[:27]},{p},{o}" for stamp, p, o in zip(
        stamps, rng.integers(1, 4000, n), rng.integers(0, 800, n), strict=True
    )]


def test_zipf_popularity_shares(tmp_path):
    path = write(tmp_path, synthetic_rows(40_000))
    workload, table = load_azure_trace(path, n_adapters=10, popularity="zipf", exponent=1.0, seed=3)
    share = np.bincount(table.adapter, minlength=10) / len(table)
    weights = 1.0 / np.arange(1, 11)
    expected = weights / weights.sum()
    assert np.all(np.abs(share - expected) <= 4.5 * np.sqrt(expected * (1 - expected) / len(table)))
    assert sum(adapter.rate_req_s for adapter in workload.adapters) == pytest.approx(len(table) / table.arrival_s[-1])


def test_uniform_popularity_and_ranks(tmp_path):
    path = write(tmp_path, synthetic_rows(20_000))
    workload, table = load_azure_trace(path, n_adapters=8, popularity="uniform", ranks=[8, 16, 64], seed=1)
    share = np.bincount(table.adapter, minlength=8) / len(table)
    assert np.all(np.abs(share - 1 / 8) <= 4.5 * np.sqrt((1 / 8) * (7 / 8) / len(table)))
    assert sorted(adapter.rank for adapter in workload.adapters) == [8, 8, 8, 16, 16, 16, 64, 64]


def test_same_seed_same_assignment(tmp_path):
    path = write(tmp_path, synthetic_rows(2_000))
    first = load_azure_trace(path, 16, "zipf", seed=5)
    again = load_azure_trace(path, 16, "zipf", seed=5)
    other = load_azure_trace(path, 16, "zipf", seed=6)
    assert first[0] == again[0]
    assert np.array_equal(first[1].adapter, again[1].adapter)
    assert not np.array_equal(first[1].adapter, other[1].adapter)


def test_length_limits_cut_prompts_and_outputs(tmp_path):
    path = write(tmp_path, ["2023-11-16 18:15:46.0,3000,500", "2023-11-16 18:15:47.0,100,3000", "2023-11-16 18:15:48.0,900,100"])
    _, table = load_azure_trace(path, 2, max_prompt_tokens=1024, max_total_tokens=2048)
    assert table.prompt_tokens.tolist() == [1024, 100, 900]
    assert table.output_tokens.tolist() == [500, 1948, 100]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["2023-11-16 18:15:46.68,374,44", "2023-11-16 18:15:47,12"], "line 3: expected 3 columns"),
        (["2023-11-16 18:15:46.68,374,44", "yesterday,1,2"], "line 3: TIMESTAMP must be a date and time"),
        (["2023-11-16 18:15:46.68,374,44", "2023,1,2"], "line 3: TIMESTAMP must be a date and time"),
        (["2023-11-16 18:15:46.68,374,44", ",1,2"], "line 3: TIMESTAMP must be a date and time"),
        (["2023-11-16 18:15:46.68,374,44", "2023-13-16 18:15:47.0,1,2"], "line 3: TIMESTAMP must be a date and time"),
        (["2023-11-16 18:15:46.68,374,44", "2023-11-16 18:15:47.0,many,2"], "line 3: ContextTokens must be an integer, got 'many'"),
        (["2023-11-16 18:15:46.68,374,44", "2023-11-16 18:15:47.0,1,2.5"], "line 3: GeneratedTokens must be an integer, got '2.5'"),
        (["2023-11-16 18:15:46.68,374,44", "2023-11-16 18:15:47.0,1,-2"], "line 3: GeneratedTokens must be an integer between 0"),
        (
            ["2023-11-16 18:15:46.68,374,44", "2023-11-16 18:15:45.0,1,2"],
            "line 3: TIMESTAMP must not be earlier than the previous row's",
        ),
        ([], "the trace has no requests"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, rows, expected):
    path = write(tmp_path, rows)
    with pytest.raises(InputError) as caught:
        load_azure_trace(path, 4)
    assert str(caught.value).startswith(str(path))
    assert expected in str(caught.value)


def test_wrong_header(tmp_path):
    path = write(tmp_path, SAMPLE, header="arrival_time_s,adapter_id,input_tokens,output_tokens")
    with pytest.raises(InputError, match="line 1: expected the header TIMESTAMP,ContextTokens,GeneratedTokens"):
        load_azure_trace(path, 4)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="Azure trace file not found"):
        load_azure_trace(tmp_path / "nope.csv", 4)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_adapters": 0}, "n_adapters"),
        ({"popularity": "pareto"}, "popularity"),
        ({"exponent": -1.0}, "exponent"),
        ({"ranks": []}, "ranks"),
        ({"seed": -3}, "seed"),
        ({"max_prompt_tokens": 0}, "max_prompt_tokens"),
        ({"max_total_tokens": 1}, "max_total_tokens"),
    ],
)
def test_bad_arguments_name_the_parameter(tmp_path, kwargs, name):
    path = write(tmp_path, SAMPLE)
    with pytest.raises(InputError, match=f"^{name}: "):
        load_azure_trace(path, **({"n_adapters": 4} | kwargs))
