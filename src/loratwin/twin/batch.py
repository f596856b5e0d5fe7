"""Many simulations at once, spread over processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from loratwin.profiles import Profile
from loratwin.twin.config import ServerConfig
from loratwin.twin.result import RunResult
from loratwin.twin.simulation import simulate
from loratwin.workload import WorkloadSpec


@dataclass(frozen=True)
class SimulationTask:
    """The arguments of one `simulate` call."""

    workload: WorkloadSpec
    server: ServerConfig
    profile: Profile | str
    duration_s: float = 3600.0
    seed: int = 0
    sample_interval_s: float = 2.0
    starvation_threshold: float = 0.1


def _run(task: SimulationTask) -> RunResult:
    return simulate(
        task.workload, task.server, task.profile, duration_s=task.duration_s, seed=task.seed,
        sample_interval_s=task.sample_interval_s, starvation_threshold=task.starvation_threshold,
    )


def simulate_many(
    tasks: Sequence[SimulationTask],
    *,
    workers: int | None = None,
    on_done: Callable[[], None] | None = None,
) -> list[RunResult]:
    """Run every task, on `workers` processes (default: all cores); results in the tasks' order,
    identical whatever the number of workers."""
    workers = min(workers or os.cpu_count() or 1, max(1, len(tasks)))
    if workers == 1:
        results = []
        for task in tasks:
            results.append(_run(task))
            if on_done:
                on_done()
        return results
    results = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(_run, tasks):
            results.append(result)
            if on_done:
                on_done()
    return results
