import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loratwin.errors import InputError
from loratwin.workload import ShareGPTLengths, generate_requests, load_trace, reference_layout

TRACE_HEADER = "arrival_time_s,adapter_id,input_tokens,output_tokens"


def write_trace(directory: Path, trace_lines, adapter_lines, trace_header=TRACE_HEADER, adapters_header="adapter_id,rank"):
    directory.mkdir(parents=True, exist_ok=True)
    if trace_lines is not None:
        (directory / "trace.csv").write_text("\n".join([trace_header, *trace_lines]) + "\n")
    if adapter_lines is not None:
        (directory / "adapters.csv").write_text("\n".join([adapters_header, *adapter_lines]) + "\n")
    return directory


def write_table(directory: Path, workload, table):
    ids = [adapter.id for adapter in workload.adapters]
    trace_lines = [
        f"{t!r},{ids[a]},{p},{o}"
        for t, a, p, o in zip(
            table.arrival_s.tolist(), table.adapter.tolist(), table.prompt_tokens.tolist(), table.output_tokens.tolist()
        )
    ]
    adapter_lines = [f"{adapter.id},{adapter.rank}" for adapter in workload.adapters]
    return write_trace(directory, trace_lines, adapter_lines)


def test_round_trip_keeps_times_and_lengths_exactly(tmp_path):
    workload = reference_layout(12, [0.5, 1.0, 3.0], [8, 16, 32], seed=2)
    table = generate_requests(workload, 120.0, seed=4)
    loaded_workload, loaded = load_trace(write_table(tmp_path, workload, table))

    for column in ("arrival_s", "adapter", "prompt_tokens", "output_tokens"):
        assert np.array_equal(getattr(loaded, column), getattr(table, column)), column
    assert loaded.arrival_s.dtype == np.float64 and loaded.adapter.dtype == np.int32
    assert [(a.id, a.rank) for a in loaded_workload.adapters] == [(a.id, a.rank) for a in workload.adapters]
    assert loaded_workload.lengths == ShareGPTLengths()
    # Without a rate column: requests per adapter / trace span (last arrival).
    counts = np.bincount(table.adapter, minlength=12)
    span_s = table.arrival_s[-1]
    assert [a.rate_req_s for a in loaded_workload.adapters] == pytest.approx((counts / span_s).tolist())


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.floats(0, 100, allow_nan=False),
            st.integers(0, 2),
            st.integers(1, 5000),
            st.integers(1, 5000),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_round_trip_of_arbitrary_traces(rows):
    times = np.cumsum([row[0] for row in rows])
    lines = [f"{t!r},ad-{a},{p},{o}" for t, (_, a, p, o) in zip(times.tolist(), rows, strict=True)]
    with tempfile.TemporaryDirectory() as directory:
        _, table = load_trace(write_trace(Path(directory), lines, ["ad-0,8", "ad-1,16", "ad-2,32"]))
    assert np.array_equal(table.arrival_s, times)
    assert table.adapter.tolist() == [row[1] for row in rows]
    assert table.prompt_tokens.tolist() == [row[2] for row in rows]
    assert table.output_tokens.tolist() == [row[3] for row in rows]


def test_rate_column_is_used_when_given(tmp_path):
    directory = write_trace(
        tmp_path, ["0.5,a,10,10", "1.0,b,10,10"], ["a,8,2.5", "b,16,0"], adapters_header="adapter_id,rank,rate"
    )
    workload, _ = load_trace(directory)
    assert [(a.id, a.rank, a.rate_req_s) for a in workload.adapters] == [("a", 8, 2.5), ("b", 16, 0.0)]


def test_rates_are_zero_when_the_trace_has_no_span(tmp_path):
    workload, table = load_trace(write_trace(tmp_path, ["0,a,10,10", "0,a,5,5"], ["a,8", "b,8"]))
    assert len(table) == 2
    assert [a.rate_req_s for a in workload.adapters] == [0.0, 0.0]


def test_tolerates_spaces_blank_lines_and_byte_order_mark(tmp_path):
    write_trace(tmp_path, ["0.0, a ,10,20", "", "1.5,a, 3 ,4"], None)
    (tmp_path / "adapters.csv").write_text("\ufeffadapter_id, rank\na, 8\n")
    workload, table = load_trace(tmp_path)
    assert workload.adapters[0].id == "a"
    assert table.prompt_tokens.tolist() == [10, 3]


# --- mistakes ---------------------------------------------------------------------------------

GOOD_ADAPTERS = ["a,8", "b,16"]
GOOD_TRACE = ["0.0,a,10,20", "0.5,b,30,40", "1.0,a,5,6"]


def replace(lines, index, text):
    return [text if i == index else line for i, line in enumerate(lines)]


@pytest.mark.parametrize(
    ("trace", "adapters", "expected"),
    [
        # trace.csv, data lines start at line 2
        (replace(GOOD_TRACE, 1, "0.5,b,30"), GOOD_ADAPTERS, "trace.csv line 3: expected 4 columns"),
        (replace(GOOD_TRACE, 2, "1.0,a,5,6,7"), GOOD_ADAPTERS, "trace.csv line 4: expected 4 columns"),
        (replace(GOOD_TRACE, 1, "soon,b,30,40"), GOOD_ADAPTERS, "trace.csv line 3: arrival_time_s must be a number, got 'soon'"),
        (replace(GOOD_TRACE, 1, "nan,b,30,40"), GOOD_ADAPTERS, "trace.csv line 3: arrival_time_s must be a finite number"),
        (replace(GOOD_TRACE, 0, "-1,a,10,20"), GOOD_ADAPTERS, "trace.csv line 2: arrival_time_s must be >= 0, got -1"),
        (
            replace(GOOD_TRACE, 2, "0.25,a,5,6"),
            GOOD_ADAPTERS,
            "trace.csv line 4: arrival_time_s must be >= the previous arrival (0.5), got 0.25",
        ),
        (replace(GOOD_TRACE, 1, "0.5,c,30,40"), GOOD_ADAPTERS, "trace.csv line 3: unknown adapter_id 'c'"),
        (replace(GOOD_TRACE, 1, "0.5,b,many,40"), GOOD_ADAPTERS, "trace.csv line 3: input_tokens must be an integer, got 'many'"),
        (replace(GOOD_TRACE, 1, "0.5,b,30,4.5"), GOOD_ADAPTERS, "trace.csv line 3: output_tokens must be an integer, got '4.5'"),
        (replace(GOOD_TRACE, 2, "1.0,a,0,6"), GOOD_ADAPTERS, "trace.csv line 4: input_tokens must be an integer between 1"),
        (replace(GOOD_TRACE, 2, "1.0,a,5,-3"), GOOD_ADAPTERS, "trace.csv line 4: output_tokens must be an integer between 1"),
        (replace(GOOD_TRACE, 2, "1.0,a,5,99999999999999999999"), GOOD_ADAPTERS, "trace.csv line 4: output_tokens must be"),
        ([], GOOD_ADAPTERS, "trace.csv: the trace has no requests"),
        # adapters.csv
        (GOOD_TRACE, ["a,8", "a,16"], "adapters.csv line 3: duplicate adapter_id 'a' (first on line 2)"),
        (GOOD_TRACE, ["a,8", "b,0"], "adapters.csv line 3: rank must be an integer > 0, got 0"),
        (GOOD_TRACE, ["a,8", "b,sixteen"], "adapters.csv line 3: rank must be an integer, got 'sixteen'"),
        (GOOD_TRACE, ["a,8", "b"], "adapters.csv line 3: expected 2 columns"),
        (GOOD_TRACE, ["a,8", ",8"], "adapters.csv line 3: adapter_id must not be empty"),
        # the adapters CSV reader's rule: an id names the adapter in vllm serve --lora-modules NAME=PATH
        (GOOD_TRACE, ["a,8", "b c,8"], "adapters.csv line 3: adapter_id must hold no '=', no ',' and no spaces"),
        (GOOD_TRACE, ["a,8", "b=c,8"], "adapters.csv line 3: adapter_id must hold no '=', no ',' and no spaces"),
        (GOOD_TRACE, [], "adapters.csv: no adapters"),
    ],
)
def test_mistakes_name_file_and_line(tmp_path, trace, adapters, expected):
    write_trace(tmp_path, trace, adapters)
    with pytest.raises(InputError) as caught:
        load_trace(tmp_path)
    assert expected in str(caught.value)
    assert str(tmp_path) in str(caught.value)


def test_line_numbers_count_blank_lines(tmp_path):
    write_trace(tmp_path, ["0.0,a,10,20", "", "0.5,z,1,1"], GOOD_ADAPTERS)
    with pytest.raises(InputError, match="trace.csv line 4: unknown adapter_id 'z'"):
        load_trace(tmp_path)


@pytest.mark.parametrize(
    ("trace_header", "adapters_header", "expected"),
    [
        ("arrival_s,adapter_id,input_tokens,output_tokens", "adapter_id,rank", "trace.csv line 1: expected the header"),
        (TRACE_HEADER, "id,rank", "adapters.csv line 1: expected the header adapter_id,rank or adapter_id,rank,rate"),
    ],
)
def test_wrong_header(tmp_path, trace_header, adapters_header, expected):
    write_trace(tmp_path, GOOD_TRACE, GOOD_ADAPTERS, trace_header=trace_header, adapters_header=adapters_header)
    with pytest.raises(InputError, match=expected):
        load_trace(tmp_path)


@pytest.mark.parametrize("rate", ["-2", "1e308"])
def test_rate_column_must_be_a_rate(tmp_path, rate):
    write_trace(tmp_path, GOOD_TRACE, ["a,8,1", f"b,8,{rate}"], adapters_header="adapter_id,rank,rate")
    with pytest.raises(InputError, match=r"adapters.csv line 3: rate must be a number from 0 to 1e9 \(req/s\)"):
        load_trace(tmp_path)


def test_empty_files(tmp_path):
    write_trace(tmp_path, None, GOOD_ADAPTERS)
    (tmp_path / "trace.csv").write_text("")
    with pytest.raises(InputError, match="trace.csv line 1: the file is empty"):
        load_trace(tmp_path)


@pytest.mark.parametrize("missing", ["trace.csv", "adapters.csv"])
def test_missing_file(tmp_path, missing):
    write_trace(tmp_path, GOOD_TRACE, GOOD_ADAPTERS)
    (tmp_path / missing).unlink()
    with pytest.raises(InputError, match=f"{missing}: .* file not found"):
        load_trace(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(InputError, match="trace directory not found"):
        load_trace(tmp_path / "nowhere")


def test_a_span_too_short_to_divide_by_gives_no_rate(tmp_path):
    # one request a hair after 0: requests per second over that span would be ~1e184
    _, table = load_trace(write_trace(tmp_path, ["5.870281768677456e-185,ad-0,1,1"], ["ad-0,8"]))
    workload, _ = load_trace(tmp_path)
    assert len(table) == 1 and workload.adapters[0].rate_req_s == 0
