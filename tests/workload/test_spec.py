from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loratwin.errors import InputError
from loratwin.workload import (
    AdapterSpec,
    LengthSpec,
    ShareGPTLengths,
    WorkloadSpec,
    load_workload_yaml,
    reference_layout,
    zipf_layout,
)

# --- reference_layout -------------------------------------------------------------------------


def test_round_robin_counts_128_adapters_over_3_rates():
    workload = reference_layout(128, [0.1, 0.5, 2.0], [8, 16, 32, 64], seed=7)
    assert Counter(a.rate_req_s for a in workload.adapters) == {0.1: 43, 0.5: 43, 2.0: 42}
    assert Counter(a.rank for a in workload.adapters) == {8: 32, 16: 32, 32: 32, 64: 32}
    assert [a.id for a in workload.adapters] == [f"lora-{i}" for i in range(128)]


@settings(max_examples=60, deadline=None)
@given(
    served=st.integers(1, 300),
    rates=st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=5, unique=True),
    ranks=st.lists(st.integers(1, 256), min_size=1, max_size=5, unique=True),
    seed=st.integers(0, 2**32),
)
def test_round_robin_counts_differ_by_at_most_one(served, rates, ranks, seed):
    workload = reference_layout(served, rates, ranks, seed)
    for levels, values in ((rates, [a.rate_req_s for a in workload.adapters]), (ranks, [a.rank for a in workload.adapters])):
        counts = Counter(values)
        # Level i is used ceil((served - i) / len(levels)) times.
        assert [counts[level] for level in levels] == [len(range(i, served, len(levels))) for i in range(len(levels))]


def test_shuffle_follows_one_generator_rates_then_ranks():
    rates, ranks, served, seed = [1.0, 2.0, 3.0], [8, 16], 10, 42
    rng = np.random.default_rng(seed)
    expected_rates = np.array([rates[i % 3] for i in range(served)])
    expected_ranks = np.array([ranks[i % 2] for i in range(served)])
    rng.shuffle(expected_rates)
    rng.shuffle(expected_ranks)
    workload = reference_layout(served, rates, ranks, seed)
    assert [a.rate_req_s for a in workload.adapters] == expected_rates.tolist()
    assert [a.rank for a in workload.adapters] == expected_ranks.tolist()


def test_layout_is_deterministic_by_seed():
    first = reference_layout(64, [0.5, 1.0, 4.0], [8, 16, 32], seed=3)
    assert first == reference_layout(64, [0.5, 1.0, 4.0], [8, 16, 32], seed=3)
    assert first != reference_layout(64, [0.5, 1.0, 4.0], [8, 16, 32], seed=4)


def test_rates_and_ranks_are_shuffled_independently():
    # With one level list equal in length, identical shuffles would pair rate i with rank i always.
    workload = reference_layout(300, [1.0, 2.0, 3.0], [8, 16, 32], seed=1)
    pairs = Counter((a.rate_req_s, a.rank) for a in workload.adapters)
    assert len(pairs) == 9


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"served": 0}, "--served"),
        ({"served": 2.5}, "--served"),
        ({"rates": []}, "--rates"),
        ({"rates": [1.0, -1.0]}, "--rates"),
        ({"rates": [float("nan")]}, "--rates"),
        ({"ranks": [8, 0]}, "--ranks"),
        ({"ranks": [8.5]}, "--ranks"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_layout_rejects_bad_flags(kwargs, flag):
    arguments = {"served": 4, "rates": [1.0], "ranks": [8], "seed": 0} | kwargs
    with pytest.raises(InputError, match=flag):
        reference_layout(**arguments)


def test_layout_error_says_which_value():
    with pytest.raises(InputError, match=r"--rates: value 2 must be a number from 0 to 1e9 \(req/s\), got -1"):
        reference_layout(4, [1.0, -1], [8], seed=0)


def test_rates_above_a_billion_req_s_are_refused_by_field():
    """1e308 req/s overflowed the planner's sums and products into numpy warnings."""
    with pytest.raises(InputError, match=r"--rates: value 1 must be a number from 0 to 1e9 \(req/s\), got 1e\+308"):
        reference_layout(4, [1e308], [8], seed=0)
    with pytest.raises(InputError, match=r"total_rate_req_s: must be a number from 0 to 1e9 \(req/s\)"):
        zipf_layout(4, 1e10)
    with pytest.raises(ValidationError, match="rate_req_s"):
        AdapterSpec(id="a", rank=8, rate_req_s=1e308)
    assert AdapterSpec(id="a", rank=8, rate_req_s=1e9).rate_req_s == 1e9


# --- models -----------------------------------------------------------------------------------


def test_workload_properties():
    workload = WorkloadSpec(
        adapters=[AdapterSpec(id="a", rank=8, rate_req_s=1.5), AdapterSpec(id="b", rank=64, rate_req_s=0.25)]
    )
    assert workload.aggregate_rate_req_s == pytest.approx(1.75)
    assert workload.max_rank == 64
    assert workload.adapter_index() == {"a": 0, "b": 1}
    assert workload.lengths == ShareGPTLengths()


def test_models_are_frozen():
    adapter = AdapterSpec(id="a", rank=8)
    with pytest.raises(ValidationError):
        adapter.rank = 16  # type: ignore[misc]


def test_duplicate_ids_rejected():
    with pytest.raises(ValidationError, match="adapters\\[0\\] and adapters\\[2\\]"):
        WorkloadSpec(adapters=[AdapterSpec(id="a", rank=8), AdapterSpec(id="b", rank=8), AdapterSpec(id="a", rank=8)])


def test_length_spec_name():
    assert LengthSpec().name == "parametric (log-normal, ShareGPT-like means 223/198)"


# --- YAML -------------------------------------------------------------------------------------


def write(tmp_path, text, name="workload.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_explicit_adapters(tmp_path):
    path = write(
        tmp_path,
        """
adapters:
  - {id: sql, rank: 8, rate_req_s: 0.5}
  - {id: chat, rank: 32, rate_req_s: 2}
  - {id: idle, rank: 16, rate_req_s: 0}
lengths:
  mean_prompt_tokens: 300
""",
    )
    workload = load_workload_yaml(path)
    assert [(a.id, a.rank, a.rate_req_s) for a in workload.adapters] == [
        ("sql", 8, 0.5),
        ("chat", 32, 2.0),
        ("idle", 16, 0.0),
    ]
    assert workload.lengths.mean_prompt_tokens == 300
    assert workload.lengths.mean_output_tokens == 198


def test_yaml_layout_matches_reference_layout(tmp_path):
    path = write(tmp_path, "layout:\n  served: 96\n  rates: [0.1, 0.4, 1.6]\n  ranks: [8, 16, 32]\n  seed: 5\n")
    assert load_workload_yaml(path) == reference_layout(96, [0.1, 0.4, 1.6], [8, 16, 32], seed=5)


def test_yaml_layout_seed_defaults_to_zero(tmp_path):
    path = write(tmp_path, "layout: {served: 10, rates: [1, 2], ranks: [8]}\n")
    assert load_workload_yaml(path) == reference_layout(10, [1, 2], [8], seed=0)


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = write(tmp_path, "adapters:\n  - {id: a, rank: 8\n  - {id: b}\n")
    with pytest.raises(InputError) as caught:
        load_workload_yaml(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: line 3, column")
    assert "invalid YAML" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the workload file is empty"),
        ("- a\n- b\n", "expected a mapping"),
        ("adapters: []\n", "adapters: must not be empty"),
        ("lengths: {mean_prompt_tokens: 200}\n", "expected exactly one of 'adapters'"),
        (
            "adapters: [{id: a, rank: 8, rate_req_s: 1}]\nlayout: {served: 1, rates: [1], ranks: [8]}\n",
            "expected exactly one of 'adapters'",
        ),
        (
            "adapters:\n"
            + "".join(f"  - {{id: a{i}, rank: 8, rate_req_s: 1}}\n" for i in range(3))
            + "  - {id: a3, rank: 8, rate_req_s: -1}\n",
            "adapters[3].rate_req_s: must be >= 0, got -1",
        ),
        ("adapters: [{id: a, rank: 0, rate_req_s: 1}]\n", "adapters[0].rank: must be > 0, got 0"),
        ("adapters: [{id: a, rank: eight}]\n", "adapters[0].rank: must be an integer, got 'eight'"),
        ("adapters: [{id: a, rank: 8.5}]\n", "adapters[0].rank: must be a whole number, got 8.5"),
        ("adapters: [{id: a, rank: 8, rate_req_s: .inf}]\n", "adapters[0].rate_req_s: must be a finite number"),
        ("adapters: [{rank: 8}]\n", "adapters[0].id: is required"),
        (
            "adapters: [{id: a, rank: 8, rate: 1}]\n",
            "adapters[0].rate: unknown field; expected one of: id, rank, rate_req_s",
        ),
        ("adapter: [{id: a, rank: 8, rate_req_s: 1}]\n", "adapter: unknown field; expected one of: adapters, layout, lengths"),
        (
            "adapters: [{id: a, rank: 8, rate_req_s: 1}, {id: a, rank: 16, rate_req_s: 1}]\n",
            "adapters: adapter ids must be unique, but 'a' is used by adapters[0] and adapters[1]",
        ),
        ("layout: {served: 0, rates: [1], ranks: [8]}\n", "layout.served: must be >= 1, got 0"),
        ("layout: {served: 4, rates: [1, -2], ranks: [8]}\n", "layout.rates[1]: must be >= 0, got -2"),
        ("layout: {served: 4, rates: [1], ranks: []}\n", "layout.ranks: must not be empty"),
        ("layout: {served: 4, rates: [1]}\n", "layout.ranks: is required"),
        ("layout: {served: 4, rates: [1], ranks: [8], sed: 1}\n", "layout.sed: unknown field; expected one of: served, rates, ranks, seed"),
        (
            "adapters: [{id: a, rank: 8, rate_req_s: 1}]\nlengths: {kind: bogus}\n",
            "lengths.kind",
        ),
        (
            "adapters: [{id: a, rank: 8, rate_req_s: 1}]\nlengths: {mean_prompt_tokens: 2000}\n",
            "lengths: mean_prompt_tokens must lie strictly between min_tokens (4) and 1024",
        ),
        (
            "adapters: [{id: a, rank: 8, rate_req_s: 1}]\nlengths: {mean_prompt_tokens: 900, mean_output_tokens: 1000}\n",
            "lengths: ",
        ),
    ],
)
def test_yaml_mistakes_name_file_and_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_workload_yaml(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_yaml_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.yaml does not exist; expected a workload YAML file"):
        load_workload_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize("bad", ["x=y", "x,y", "x y", ""])
def test_adapter_ids_refused_everywhere_they_are_read(bad):
    """One rule for ids (check_adapter_id / adapter_id_problem), in files and in AdapterSpec alike."""
    from loratwin.workload.spec import check_adapter_id

    with pytest.raises(InputError):
        check_adapter_id(bad, "f line 2")
    with pytest.raises(ValidationError):
        AdapterSpec(id=bad, rank=8, rate_req_s=1)
