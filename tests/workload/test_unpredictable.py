"""The unpredictable process: its rate walk stays within [1/7.5, 7.5] times the base rate over any
window (a day included), `describe` expects what is drawn, and it takes a schedule like the others."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loratwin.workload import (
    AdapterSpec,
    UnpredictableArrival,
    WorkloadSpec,
    generate_requests,
    load_workload_yaml,
    reference_layout,
)
from loratwin.workload.describe import describe_workload
from loratwin.workload.unpredictable import RATE_BOUND, RATE_FACTOR, expected_multipliers, walk_multipliers

DAY_S = 24 * 3600.0


def _walk(streams: int, periods: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = np.where(rng.random(streams * periods) < 0.5, 1, -1)
    return walk_multipliers(steps, np.arange(streams) * periods).reshape(streams, periods), steps


def test_the_walk_is_clamped_to_the_published_bounds():
    multipliers, steps = _walk(200, 288)  # a day of 300 s periods
    assert multipliers.min() == pytest.approx(1 / RATE_BOUND) and multipliers.max() == pytest.approx(RATE_BOUND)
    assert np.all(multipliers[:, 0] == 1.0)  # each adapter starts at its base rate
    # away from the bounds every period moves by exactly x1.5 or /1.5, as before the clamp
    inside = (multipliers[:, :-1] < 5.1) & (multipliers[:, :-1] > 1 / 5.1) & (multipliers[:, 1:] < 5.1) & (
        multipliers[:, 1:] > 1 / 5.1
    )
    ratio = np.log(multipliers[:, 1:] / multipliers[:, :-1])[inside]
    assert np.allclose(np.abs(ratio), math.log(RATE_FACTOR))
    unclamped = RATE_FACTOR ** np.cumsum(steps.reshape(200, 288)[:, 1:], axis=1)
    before_any_bound = np.cumprod((unclamped < 7) & (unclamped > 1 / 7), axis=1).astype(bool)
    assert np.allclose(multipliers[:, 1:][before_any_bound], unclamped[before_any_bound])


def test_expected_multipliers_are_the_walk_average():
    multipliers, _ = _walk(20_000, 40, seed=3)
    expected = expected_multipliers(40)
    assert expected[0] == 1.0 and expected[1] == pytest.approx((RATE_FACTOR + 1 / RATE_FACTOR) / 2)
    assert np.allclose(multipliers.mean(axis=0), expected, rtol=0.03)
    # settled, it stays: a day, a year and more expect a bounded rate
    settled = expected_multipliers(10**9)
    assert len(settled) < 2000 and 1 < settled[-1] < RATE_BOUND


@pytest.mark.parametrize("hours", [1, 4, 24, 24 * 365])
def test_describe_expects_a_bounded_rate_over_long_windows(hours):
    # the case: a 40 req/s layout expected 1.7e10 req/s over a day before the clamp
    workload = reference_layout(100, [0.4], [8], 0, arrival=UnpredictableArrival())
    base = workload.aggregate_rate_req_s
    assert base == pytest.approx(40.0)
    expected = describe_workload(workload, duration_s=hours * 3600.0)["expected_aggregate_rate_req_s"]
    assert base < expected < RATE_BOUND * base
    assert expected < 2.1 * base  # the walk's settled mean: 2.04 times the base


def test_a_day_of_arrivals_stays_bounded_and_as_described():
    workload = reference_layout(200, [0.05], [8], 0, arrival=UnpredictableArrival())
    table = generate_requests(workload, DAY_S, seed=2)
    counts = np.bincount(table.adapter, minlength=200)
    assert counts.max() < RATE_BOUND * 0.05 * DAY_S
    described = describe_workload(workload, duration_s=DAY_S)["expected_requests"]
    assert len(table) == pytest.approx(described, rel=0.15)
    # per adapter and period, the rate never leaves [1/7.5, 7.5] x base (Poisson noise aside)
    per_period = np.bincount(table.adapter * 288 + (table.arrival_s // 300).astype(np.int64), minlength=200 * 288)
    assert per_period.max() < 1.5 * RATE_BOUND * 0.05 * 300


def _counts(table, edges):
    return np.histogram(table.arrival_s, bins=edges)[0]


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_a_schedule_scales_the_rate_within_periods(sigma):
    # one period longer than the run: the walk stays at the base rate, the schedule alone moves it
    schedule = [{"until_s": 100, "scale": 0.5}, {"until_s": 200, "scale": 0.0}, {"scale": 2.0}]
    arrival = UnpredictableArrival(period_s=10_000, sigma=sigma, schedule=schedule)
    workload = WorkloadSpec(
        adapters=[AdapterSpec(id=f"a{i}", rank=8, rate_req_s=10.0) for i in range(60)], arrival=arrival
    )
    table = generate_requests(workload, 300.0, seed=1)
    first, idle, last = _counts(table, [0, 100, 200, 300])
    assert idle == 0
    assert first == pytest.approx(60 * 10 * 0.5 * 100, rel=0.1)
    assert last == pytest.approx(60 * 10 * 2.0 * 100, rel=0.1)
    described = describe_workload(workload, duration_s=300.0)
    assert described["expected_aggregate_rate_req_s"] == pytest.approx(600 * (0.5 + 0 + 2.0) / 3)
    assert described["scheduled_adapters"] == 60


def test_schedule_changes_inside_many_periods():
    arrival = UnpredictableArrival(period_s=45, schedule=[{"until_s": 100, "scale": 1.0}, {"scale": 3.0}])
    workload = WorkloadSpec(adapters=[AdapterSpec(id=f"a{i}", rank=8, rate_req_s=5.0) for i in range(40)], arrival=arrival)
    table = generate_requests(workload, 400.0, seed=6)
    assert np.all(np.diff(table.arrival_s) >= 0) and table.arrival_s.max() < 400
    # the period that holds the change (90-135 s) is cut there: three times the rate after 100 s
    before, after = _counts(table, [90, 100, 110])
    assert after == pytest.approx(3 * before, rel=0.2)
    expected = describe_workload(workload, duration_s=400.0)["expected_requests"]
    assert len(table) == pytest.approx(expected, rel=0.1)


def test_yaml_unpredictable_with_a_schedule(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(
        "adapters:\n  - {id: a, rank: 8, rate_req_s: 1.0}\n"
        "arrival: {kind: unpredictable, period_s: 120, schedule: [{until_s: 600, scale: 1.0}, {scale: 2.0}]}\n"
    )
    (arrival,) = load_workload_yaml(path).arrivals()
    assert arrival.schedule[1].scale == 2.0 and arrival.period_s == 120
