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


def mean_summary(results: Sequence[RunResult]) -> dict[str, float | None]:
    """The mean of several runs' summaries (seeds of one configuration), metric by metric: over the
    runs that have the metric (a latency is None where no request finished, and counts as no value,
    not as 0 ms); None where no run has it. `starved_share`: the share of the runs that starve."""
    keys = dict.fromkeys(k for r in results for k, v in r.summary.items()
                         if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
    mean: dict[str, float | None] = {}
    for k in keys:
        values = [r.summary[k] for r in results if isinstance(r.summary.get(k), (int, float))]
        mean[k] = sum(values) / len(values) if values else None
    mean["starved_share"] = sum(bool(r.starved) for r in results) / len(results) if results else 0.0
    return mean
