"""Run a sweep: expand the grid, skip what the store already holds, feed a runner, store as runs finish."""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loratwin.errors import LoratwinError
from loratwin.sweep.grid import Expansion, GridSpec, RunConfig, expand
from loratwin.sweep.runners import Runner, check_runner_args, make_runner
from loratwin.sweep.search import SearchPlan
from loratwin.sweep.store import ResultStore, store_bytes
from loratwin.threshold import check_threshold


@dataclass
class SweepProgress:
    """What a progress display needs. `units` are runs for a full sweep, frontiers for a search."""

    units_done: int = 0
    units_total: int = 0
    runs_done: int = 0
    failed: int = 0
    unit_name: str = "runs"


@dataclass
class SweepSummary:
    out: str
    grid: str
    profile: str
    mode: str  # full | search
    backend: str
    workers: int
    configs: int  # feasible runs of the selected grid
    workloads: int
    skipped_infeasible: int  # configurations that cannot start, among those considered (--max-configs)
    already_done: int  # found in the store, not rerun
    ran: int
    failed: int  # of those run now
    frontiers: int
    wall_s: float
    runs_per_s: float | None
    store_bytes: int
    set_aside: list[str] = field(default_factory=list)  # damaged part files moved aside; their runs reran

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _GridPlan:
    """Every run of the grid not already stored, in grid order."""

    def __init__(self, runs: list[RunConfig]) -> None:
        self._todo = list(runs)

    def ready(self) -> list[RunConfig]:
        todo, self._todo = self._todo, []
        return todo

    def record(self, record: dict[str, Any]) -> None:
        pass

    @property
    def finished(self) -> bool:
        return not self._todo


def check_sweep_args(search: bool, threshold: float, max_configs: int | None) -> None:
    """run_sweep's arguments (the CLI's flags), checked before anything runs or is written."""
    if search and max_configs is not None:
        raise LoratwinError("--max-configs limits a full sweep; with --search, select workloads with --workloads")
    if max_configs is not None and max_configs < 1:
        raise LoratwinError(f"--max-configs: must be >= 1, got {max_configs}")
    check_threshold(threshold, "--threshold")


def run_sweep(
    grid: GridSpec,
    out: str | Path,
    *,
    source: str = "grid",
    search: bool = False,
    threshold: float = 0.1,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    workload_slice: slice | None = None,
    max_configs: int | None = None,
    on_progress: Callable[[SweepProgress], None] | None = None,
    expansion: Expansion | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Run (or resume) the sweep of `grid` into the results store at `out`.

    A KeyboardInterrupt stops it after storing every finished run; rerunning resumes it.
    `on_warning` hears, as the store opens, of each damaged part set aside (its runs are rerun).
    """
    check_sweep_args(search, threshold, max_configs)
    check_runner_args(backend, workers, address)
    if expansion is None:
        expansion = expand(grid, source, workload_slice=workload_slice)
    runs = expansion.runs if max_configs is None else expansion.runs[:max_configs]
    started = time.monotonic()
    progress = SweepProgress()
    with ResultStore(out, grid.canonical()) as store:
        for line in store.set_aside:
            if on_warning:
                on_warning(line)
        already = sum(1 for r in runs if r.key in store.done)
        if search:
            plan: Any = SearchPlan(expansion, store.done, threshold)
            progress.unit_name = "frontiers"
            progress.units_total = plan.frontiers_total
        else:
            plan = _GridPlan([r for r in runs if r.key not in store.done])
            progress.units_total = len(runs) - already
        runner = make_runner(expansion.profile, backend=backend, workers=workers, address=address)
        summary = SweepSummary(
            out=str(out), grid=grid.name, profile=expansion.profile.name, mode="search" if search else "full",
            backend=backend, workers=runner.workers, configs=len(runs), workloads=len(expansion.workloads),
            skipped_infeasible=expansion.skipped_within(max_configs), already_done=already, ran=0, failed=0,
            frontiers=len(expansion.frontiers), wall_s=0.0, runs_per_s=None, store_bytes=0,
            set_aside=list(store.set_aside),
        )
        try:
            with _interrupts_deferred() as stop:
                _drive(runner, store, plan, progress, on_progress, stop)
        except BaseException:
            # interrupted (or a bug): runs in progress are dropped, finished ones stored on exit
            runner.close(cancel=True)
            raise
        runner.close()
        summary.ran, summary.failed = progress.runs_done, progress.failed
        if search:
            summary.already_done = plan.reused
    summary.wall_s = time.monotonic() - started
    summary.runs_per_s = summary.ran / summary.wall_s if summary.ran else None
    summary.store_bytes = store_bytes(out)
    return summary


@contextmanager
def _interrupts_deferred() -> Iterator[threading.Event]:
    """Ctrl-C and SIGTERM set the returned event; the sweep stops at its next safe point, never in
    the middle of a store write. A second Ctrl-C interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _drive(
    runner: Runner,
    store: ResultStore,
    plan: Any,
    progress: SweepProgress,
    on_progress: Callable[[SweepProgress], None] | None,
    stop: threading.Event,
) -> None:
    queue: deque[RunConfig] = deque()
    in_flight = 0
    if on_progress:
        on_progress(progress)
    while True:
        if stop.is_set():
            raise KeyboardInterrupt
        queue.extend(plan.ready())
        while queue and in_flight < runner.capacity:
            runner.submit(queue.popleft())
            in_flight += 1
        if in_flight == 0:
            if not queue and plan.finished:
                break
            raise AssertionError("sweep plan stalled: nothing in flight and nothing to run")
        records = runner.wait(0.5)
        for record in records:
            in_flight -= 1
            store.add(record)
            plan.record(record)
            progress.runs_done += 1
            progress.failed += record["status"] != "ok"
            if not isinstance(plan, SearchPlan):
                progress.units_done += 1
        # settles the frontiers these records decided, so that the count below is current
        queue.extend(plan.ready())
        if isinstance(plan, SearchPlan):
            progress.units_done = plan.frontiers_done
        store.flush_if_due()
        if on_progress:
            on_progress(progress)
