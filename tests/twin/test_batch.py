"""Several simulations at once, and the reference engine through simulate()."""

from __future__ import annotations

import numpy as np

from loratwin import ServerConfig, reference_layout, simulate
from loratwin.twin.batch import SimulationTask, simulate_many


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
