from collections import Counter

import numpy as np
import pytest

from loratwin.errors import InputError
from loratwin.workload import (
    GammaArrival,
    generate_requests,
    load_workload_yaml,
    zipf_layout,
)


def test_rates_follow_the_zipf_law_and_sum_to_the_total():
    workload = zipf_layout(50, total_rate_req_s=40.0, exponent=1.2, ranks=[8, 16, 32], seed=1)
    rates = np.array([adapter.rate_req_s for adapter in workload.adapters])
    assert rates.sum() == pytest.approx(40.0)
    weights = 1.0 / np.arange(1, 51) ** 1.2
    assert rates == pytest.approx(40.0 * weights / weights.sum())
    assert [adapter.id for adapter in workload.adapters] == [f"lora-{i}" for i in range(50)]


def test_exponent_zero_is_uniform():
    workload = zipf_layout(8, total_rate_req_s=4.0, exponent=0.0, ranks=[8], seed=0)
    assert [adapter.rate_req_s for adapter in workload.adapters] == pytest.approx([0.5] * 8)


def test_ranks_round_robin_then_shuffled_by_seed():
    workload = zipf_layout(10, 5.0, 1.0, ranks=[8, 16, 32], seed=4)
    expected = np.array([[8, 16, 32][i % 3] for i in range(10)])
    np.random.default_rng(4).shuffle(expected)
    assert [adapter.rank for adapter in workload.adapters] == expected.tolist()
    assert Counter(adapter.rank for adapter in workload.adapters) == {8: 4, 16: 3, 32: 3}
    assert zipf_layout(10, 5.0, 1.0, [8, 16, 32], seed=4) == workload
    assert zipf_layout(10, 5.0, 1.0, [8, 16, 32], seed=5) != workload


def test_generated_shares_match_the_popularity_law():
    workload = zipf_layout(20, total_rate_req_s=100.0, exponent=1.0, ranks=[8], seed=0)
    duration_s = 500.0
    table = generate_requests(workload, duration_s, seed=3)
    counts = np.bincount(table.adapter, minlength=20)
    expected = np.array([adapter.rate_req_s for adapter in workload.adapters]) * duration_s
    assert np.all(np.abs(counts - expected) <= 4.5 * np.sqrt(expected))
    assert counts[0] / counts.sum() == pytest.approx(1 / sum(1 / k for k in range(1, 21)), rel=0.03)


def test_zipf_layout_takes_lengths_and_arrival():
    workload = zipf_layout(4, 2.0, arrival=GammaArrival(cv=2))
    assert workload.arrivals() == (GammaArrival(cv=2),) * 4


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"served": 0}, "served"),
        ({"total_rate_req_s": -1.0}, "total_rate_req_s"),
        ({"total_rate_req_s": float("inf")}, "total_rate_req_s"),
        ({"exponent": -0.5}, "exponent"),
        ({"exponent": "1"}, "exponent"),
        ({"ranks": []}, "ranks"),
        ({"ranks": [8, 0]}, "ranks"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, name):
    arguments = {"served": 4, "total_rate_req_s": 1.0, "exponent": 1.0, "ranks": [8], "seed": 0} | kwargs
    with pytest.raises(InputError, match=f"^{name}: "):
        zipf_layout(**arguments)


def write(tmp_path, text):
    path = tmp_path / "workload.yaml"
    path.write_text(text)
    return path


def test_yaml_zipf_layout(tmp_path):
    path = write(
        tmp_path,
        "layout: {kind: zipf, served: 30, total_rate_req_s: 12, exponent: 0.8, ranks: [8, 16], seed: 2}\n"
        "arrival: {kind: gamma, cv: 1.5}\n",
    )
    assert load_workload_yaml(path) == zipf_layout(30, 12.0, 0.8, [8, 16], 2, arrival=GammaArrival(cv=1.5))


def test_yaml_zipf_defaults(tmp_path):
    path = write(tmp_path, "layout: {kind: zipf, served: 5, total_rate_req_s: 2, ranks: [8]}\n")
    assert load_workload_yaml(path) == zipf_layout(5, 2.0, 1.0, [8], 0)


def test_yaml_reference_layout_may_name_its_kind(tmp_path):
    path = write(tmp_path, "layout: {kind: reference, served: 5, rates: [1], ranks: [8]}\n")
    assert len(load_workload_yaml(path).adapters) == 5


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("{kind: zipf, served: 5, total_rate_req_s: -2, ranks: [8]}", "layout.total_rate_req_s: must be >= 0, got -2"),
        ("{kind: zipf, served: 5, total_rate_req_s: 2, exponent: -1, ranks: [8]}", "layout.exponent: must be >= 0, got -1"),
        ("{kind: zipf, served: 5, ranks: [8]}", "layout.total_rate_req_s: is required"),
        (
            "{kind: zipf, served: 5, total_rate_req_s: 2, rates: [1], ranks: [8]}",
            "layout.rates: unknown field; expected one of: kind, served, total_rate_req_s, exponent, ranks, seed",
        ),
        ("{kind: pareto, served: 5}", "layout.kind: must be one of 'reference', 'zipf', got 'pareto'"),
    ],
)
def test_yaml_zipf_mistakes_name_the_field(tmp_path, layout, expected):
    path = write(tmp_path, f"layout: {layout}\n")
    with pytest.raises(InputError) as caught:
        load_workload_yaml(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)
