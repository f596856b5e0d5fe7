import math
import time

import numpy as np
import pytest

from loratwin.errors import InputError
from loratwin.workload import AdapterSpec, RequestTable, WorkloadSpec, generate_requests, reference_layout


def small_workload(rates=(0.5, 2.0, 10.0, 0.0)):
    return WorkloadSpec(adapters=[AdapterSpec(id=f"a{i}", rank=8, rate_req_s=r) for i, r in enumerate(rates)])


def test_poisson_counts_per_adapter_within_four_sigma():
    rates = (0.5, 2.0, 10.0, 0.0)
    duration_s = 1_000.0
    table = generate_requests(small_workload(rates), duration_s, seed=1)
    counts = np.bincount(table.adapter, minlength=len(rates))
    for rate, count in zip(rates, counts, strict=True):
        expected = rate * duration_s
        assert abs(count - expected) <= 4 * math.sqrt(expected), (rate, count)


def test_gaps_of_one_adapter_are_exponential():
    table = generate_requests(small_workload((4.0,)), 5_000.0, seed=2)
    gaps = np.diff(table.arrival_s)
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)  # exponential: CV = 1


def test_table_shape_order_and_types():
    duration_s = 300.0
    table = generate_requests(small_workload(), duration_s, seed=0)
    assert len(table) == len(table.adapter) == len(table.prompt_tokens) == len(table.output_tokens) > 0
    assert table.arrival_s.dtype == np.float64
    assert table.adapter.dtype == table.prompt_tokens.dtype == table.output_tokens.dtype == np.int32
    assert np.all(np.diff(table.arrival_s) >= 0)
    assert table.arrival_s.min() >= 0 and table.arrival_s.max() < duration_s
    assert set(np.unique(table.adapter)) <= {0, 1, 2}  # the zero-rate adapter never appears
    assert table.offered_tokens == int(table.prompt_tokens.sum()) + int(table.output_tokens.sum())


def test_same_seed_same_table():
    workload = reference_layout(32, [0.5, 1.0, 2.0], [8, 16], seed=0)
    first = generate_requests(workload, 200.0, seed=9)
    second = generate_requests(workload, 200.0, seed=9)
    other = generate_requests(workload, 200.0, seed=10)
    for column in ("arrival_s", "adapter", "prompt_tokens", "output_tokens"):
        assert np.array_equal(getattr(first, column), getattr(second, column))
    assert len(first) != len(other) or not np.array_equal(first.arrival_s, other.arrival_s)


def test_450k_requests_are_fast():
    workload = reference_layout(300, [0.25, 1.0, 2.0], [8, 16, 32], seed=0)  # 325 req/s
    generate_requests(workload, 10.0, seed=0)  # warm the length fit cache
    best_s = math.inf
    for _ in range(2):
        start = time.perf_counter()
        table = generate_requests(workload, 1_400.0, seed=1)
        best_s = min(best_s, time.perf_counter() - start)
    assert 430_000 < len(table) < 480_000
    assert best_s < 0.5


@pytest.mark.parametrize(
    ("duration_s", "seed", "expected"),
    [
        (0.0, 0, "duration_s"),
        (-5.0, 0, "duration_s"),
        (math.inf, 0, "duration_s"),
        ("10", 0, "duration_s"),
        (10.0, -1, "seed"),
        (10.0, 1.5, "seed"),
    ],
)
def test_bad_arguments(duration_s, seed, expected):
    with pytest.raises(InputError, match=expected):
        generate_requests(small_workload(), duration_s, seed)


def test_table_columns_must_match():
    with pytest.raises(ValueError, match="equal length"):
        RequestTable(arrival_s=np.zeros(3), adapter=np.zeros(2), prompt_tokens=np.ones(3), output_tokens=np.ones(3))
