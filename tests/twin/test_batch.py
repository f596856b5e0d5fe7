"""Several simulations at once, and the reference engine through simulate()."""

from __future__ import annotations

import numpy as np

from loratwin import ServerConfig, reference_layout, simulate
from loratwin.twin.batch import SimulationTask, mean_summary, simulate_many
from loratwin.twin.result import RunResult


def test_simulate_many_is_independent_of_workers_and_matches_single_runs():
    workload = reference_layout(16, [0.6, 0.3], [8, 16], seed=0)
    server = ServerConfig(max_loras=4)
    tasks = [SimulationTask(workload, server, "llama-3.1-8b-instruct", duration_s=90, seed=s) for s in range(3)]
    serial = simulate_many(tasks, workers=1)
    parallel = simulate_many(tasks, workers=2)
    for a, b, s in zip(serial, parallel, range(3), strict=True):
        assert a.summary == b.summary
        single = simulate(workload, server, "llama-3.1-8b-instruct", duration_s=90, seed=s)
        assert single.summary == a.summary
    assert serial[0].summary != serial[1].summary  # seeds differ


def test_reference_engine_gives_the_same_run():
    workload = reference_layout(12, [0.8, 0.4], [8, 16], seed=1)
    server = ServerConfig(max_loras=3, client_max_waiting=40)
    fast = simulate(workload, server, "qwen-2.5-7b-instruct", duration_s=60, seed=4)
    ref = simulate(workload, server, "qwen-2.5-7b-instruct", duration_s=60, seed=4, engine_mode="reference")
    assert fast.summary == ref.summary
    for column in fast.requests:
        np.testing.assert_array_equal(fast.requests[column], ref.requests[column])


def _run(**summary) -> RunResult:
    return RunResult(config={}, summary=summary, adapters=[], requests={}, timeseries={}, steps={})


def test_the_mean_of_seeds_counts_a_missing_latency_as_no_value():
    runs = [_run(mean_ttft_ms=None, p99_ttft_ms=None, completed=0, starved=True),
            _run(mean_ttft_ms=300.0, p99_ttft_ms=900.0, completed=10, starved=False)]
    mean = mean_summary(runs)
    assert mean["mean_ttft_ms"] == 300.0 and mean["p99_ttft_ms"] == 900.0  # not (0 + 900) / 2
    assert mean["completed"] == 5 and mean["starved_share"] == 0.5
    nothing = mean_summary([runs[0], runs[0]])  # no request finished in any seed
    assert nothing["mean_ttft_ms"] is None and nothing["completed"] == 0
