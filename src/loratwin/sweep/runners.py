"""Runners execute sweep runs: in this process, on a local process pool, or on a Ray cluster.

All share one small surface: `submit(config)`, `wait(timeout_s)` returning the records finished
so far (at least one if any is in flight and the timeout allows), `capacity` (runs worth keeping
in flight) and `close()`. A run is a pure function of its config, so records do not depend on
the runner or the number of workers; only their order of arrival does.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from loratwin.errors import InfeasibleConfigError, LoratwinError
from loratwin.profiles import Profile
from loratwin.sweep.grid import RunConfig
from loratwin.sweep.store import METRIC_NAMES
from loratwin.twin import simulate

BACKENDS = ("local", "ray")


def run_config(config: RunConfig, profile: Profile) -> dict[str, Any]:
    """Simulate one configuration; any error becomes a `failed` record instead of stopping the sweep."""
    record: dict[str, Any] = config.columns()
    record.update({name: None for name in METRIC_NAMES})
    try:
        workload = config.workload.build(config.served)
        result = simulate(
            workload, config.server_config(), profile, duration_s=config.duration_s, seed=config.workload.seed
        )
    except InfeasibleConfigError as err:
        record.update(status="infeasible", error=str(err))
        return record
    except Exception as err:  # noqa: BLE001 - recorded with the run, the sweep goes on
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
        return record
    summary = result.summary
    record.update({name: summary[name] for name in METRIC_NAMES if name in summary})
    record["kv_cache_tokens"] = result.config["server"]["kv_cache_tokens"]
    record["min_adapter_completion_ratio"] = min(a["completion_ratio"] for a in result.adapters)
    record.update(status="ok", error=None)
    return record


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def clamp_workers(backend: str, workers: int | None) -> tuple[int | None, str | None]:
    """--workers for the local backend, at most this machine's CPUs (more would only wait for a CPU,
    each holding a run's memory), and the note that says so when it was more; the rest as given."""
    if backend != "local" or workers is None or workers <= (cpus := default_workers()):
        return workers, None
    return cpus, f"note: --workers {workers}: this machine has {cpus} CPUs for this process; running {cpus} workers"


class Runner(Protocol):
    capacity: int
    workers: int

    def submit(self, config: RunConfig) -> None: ...
    def wait(self, timeout_s: float | None) -> list[dict[str, Any]]: ...
    def close(self, cancel: bool = False) -> None: ...


class InlineRunner:
    """Runs in this process, one at a time: no start-up cost, easiest to debug (`--workers 1`)."""

    workers = 1
    capacity = 1

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._queue: deque[RunConfig] = deque()

    def submit(self, config: RunConfig) -> None:
        self._queue.append(config)

    def wait(self, timeout_s: float | None) -> list[dict[str, Any]]:
        return [run_config(self._queue.popleft(), self.profile)] if self._queue else []

    def close(self, cancel: bool = False) -> None:
        self._queue.clear()


# --- local process pool -----------------------------------------------------------------------

_worker_profile: Profile | None = None


def _init_worker(profile: Profile, sweep_pid: int) -> None:
    global _worker_profile
    _worker_profile = profile
    # The parent handles Ctrl-C and stops the pool; a worker just finishes or is dropped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_without_sweep, args=(sweep_pid,), daemon=True).start()


def _exit_without_sweep(sweep_pid: int) -> None:
    # After a kill -9 of the sweep, its idle workers would wait for work forever (and keep the
    # forkserver alive): they check that the sweep still exists.
    while True:
        time.sleep(1.0)
        try:
            os.kill(sweep_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def _run_in_worker(config: RunConfig) -> dict[str, Any]:
    assert _worker_profile is not None
    return run_config(config, _worker_profile)


class ProcessRunner:
    """A pool of worker processes on this machine."""

    def __init__(self, profile: Profile, workers: int) -> None:
        self.profile = profile
        self.workers = workers
        # Two per worker: a worker never waits for the parent to hand it the next run.
        self.capacity = 2 * workers
        self._futures: dict[Future, RunConfig] = {}
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # forkserver: workers fork from a clean server that has the twin imported once, not from
        # this process with its progress-bar thread.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["loratwin.twin.simulation", "loratwin.sweep.runners"])
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.profile, os.getpid()),
        )

    def submit(self, config: RunConfig) -> None:
        self._futures[self._executor.submit(_run_in_worker, config)] = config

    def wait(self, timeout_s: float | None) -> list[dict[str, Any]]:
        if not self._futures:
            return []
        finished, _ = wait_futures(list(self._futures), timeout=timeout_s, return_when=FIRST_COMPLETED)
        records = []
        broken = False
        for future in finished:
            config = self._futures.pop(future)
            try:
                records.append(future.result())
            except BrokenProcessPool:
                broken = True
                records.append(_failed(config, "a worker process died (out of memory or killed?)"))
        if broken:
            # the pool is unusable: fail its other runs too and start afresh
            for config in list(self._futures.values()):
                records.append(_failed(config, "a worker process died (out of memory or killed?)"))
            self._futures.clear()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._start()
        return records

    def close(self, cancel: bool = False) -> None:
        # the pool has no public way to stop runs in progress; its processes are terminated instead
        processes = list((getattr(self._executor, "_processes", None) or {}).values())
        self._executor.shutdown(wait=not cancel, cancel_futures=True)
        if cancel:
            for process in processes:
                process.terminate()
        self._futures.clear()


def _failed(config: RunConfig, message: str) -> dict[str, Any]:
    record = config.columns()
    record.update({name: None for name in METRIC_NAMES})
    record.update(status="failed", error=message)
    return record


# --- Ray ------------------------------------------------------------------------------------------


class RayRunner:
    """Runs on a Ray cluster (`address`), or on a local Ray started here when no address is given.

    Workers must be able to import loratwin (install it on the cluster's nodes, or use a Ray
    runtime environment).
    """

    def __init__(self, profile: Profile, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise LoratwinError(
                "--backend ray needs Ray: pip install 'loratwin[ray]' (or pip install ray)"
            ) from None
        self._ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is not None:
                _check_reachable(address)
                options["address"] = address
            elif workers is not None:
                options["num_cpus"] = workers
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise LoratwinError(f"--address {address}: cannot connect to Ray ({err})") from None
        cluster_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.workers = min(workers, cluster_cpus) if workers is not None else cluster_cpus
        self.capacity = 2 * self.workers
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_config)
        self._profile_ref = ray.put(profile)
        self._pending: dict[Any, RunConfig] = {}

    def submit(self, config: RunConfig) -> None:
        self._pending[self._remote.remote(config, self._profile_ref)] = config

    def wait(self, timeout_s: float | None) -> list[dict[str, Any]]:
        if not self._pending:
            return []
        ready, _ = self._ray.wait(list(self._pending), num_returns=1, timeout=timeout_s)
        if ready:
            # take everything else that is ready too, without waiting
            more, _ = self._ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0)
            ready = list(dict.fromkeys(list(ready) + list(more)))
        records = []
        for ref in ready:
            config = self._pending.pop(ref)
            try:
                records.append(self._ray.get(ref))
            except Exception as err:  # noqa: BLE001 - a lost worker or node fails the run, not the sweep
                records.append(_failed(config, f"Ray: {type(err).__name__}: {err}"))
        return records

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._pending:
                self._ray.cancel(ref, force=True)
        self._pending.clear()
        if self._started_here:
            self._ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a wrong --address: Ray itself keeps retrying for minutes."""
    host_port = address.removeprefix("ray://").rsplit("/", 1)[0]
    if address == "auto" or ":" not in host_port:
        return
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as err:
        raise LoratwinError(f"--address {address}: no Ray cluster answers there ({err})") from None


def check_runner_args(backend: str, workers: int | None, address: str | None) -> None:
    """The runner's arguments (the CLI's flags), checked before anything runs."""
    if backend not in BACKENDS:
        raise LoratwinError(f"--backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if workers is not None and workers < 1:
        raise LoratwinError(f"--workers: must be >= 1, got {workers}")
    if address is not None and backend != "ray":
        raise LoratwinError("--address is for --backend ray")


def make_runner(
    profile: Profile, *, backend: str = "local", workers: int | None = None, address: str | None = None
) -> Runner:
    check_runner_args(backend, workers, address)
    if backend == "ray":
        return RayRunner(profile, address=address, workers=workers)
    workers = workers if workers is not None else default_workers()
    if workers == 1:
        return InlineRunner(profile)
    return ProcessRunner(profile, workers)

