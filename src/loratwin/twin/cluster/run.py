"""Simulate a cluster: draw the workload's requests once, route them, run every replica."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from loratwin.errors import InputError, LoratwinError
from loratwin.profiles import Profile, load_profile
from loratwin.twin.cluster.lockstep import ReplicaRun, run_lockstep
from loratwin.twin.cluster.report import ClusterResult
from loratwin.twin.cluster.routing import AFFINITY, LEAST_OUTSTANDING, weighted_routes
from loratwin.twin.cluster.spec import DEFAULT_SPILL_THRESHOLD, ClusterSpec, check_router
from loratwin.twin.config import resolve_server
from loratwin.twin.result import RunResult
from loratwin.twin.simulation import (
    DEFAULT_DURATION_S,
    DEFAULT_SAMPLE_INTERVAL_S,
    NS_PER_S,
    _check_clock,
    _lengths_name,
    _run_engine,
    arrival_times_ns,
    finish_run,
    prepare_run,
)
from loratwin.workload import RequestTable, WorkloadSpec, generate_requests
from loratwin.workload.trace import trace_window_s


@dataclass(frozen=True)
class ReplicaTask:
    """One replica's run with the requests routed to it (for a worker process)."""

    workload: WorkloadSpec
    server: object  # ServerConfig
    profile: Profile
    requests: RequestTable
    duration_s: float
    seed: int
    sample_interval_s: float
    starvation_threshold: float
    lengths_name: str
    outputs_requested: bool


def _prepare(task: ReplicaTask):
    import dataclasses

    prepared = prepare_run(task.workload, task.server, task.profile, duration_s=task.duration_s, seed=task.seed,
                           requests=task.requests, outputs_requested=task.outputs_requested,
                           sample_interval_s=task.sample_interval_s)
    return dataclasses.replace(prepared, lengths_name=task.lengths_name)


def run_replica(task: ReplicaTask) -> RunResult:
    prepared = _prepare(task)
    out = _run_engine(prepared.inputs, prepared.profile, prepared.duration_s, n_requests=len(prepared.inputs.arrival_ns),
                      max_num_seqs=prepared.inputs.max_num_seqs)
    return finish_run(prepared, out, task.starvation_threshold)


def _subset(requests: RequestTable, idx: np.ndarray, local_adapter: np.ndarray) -> RequestTable:
    return RequestTable(arrival_s=requests.arrival_s[idx], adapter=local_adapter[requests.adapter[idx]],
                        prompt_tokens=requests.prompt_tokens[idx], output_tokens=requests.output_tokens[idx])


def simulate_cluster(
    spec: ClusterSpec,
    profile: Profile | str,
    *,
    router: str = "weighted-random",
    duration_s: float | None = None,
    seed: int = 0,
    workers: int | None = None,
    use_ray: bool = False,
    spill_threshold: int = DEFAULT_SPILL_THRESHOLD,
    sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
    starvation_threshold: float = 0.1,
    requests: RequestTable | None = None,
    outputs_requested: bool | None = None,
) -> ClusterResult:
    """Simulate `spec`'s replicas behind `router` for `duration_s` seconds.

    The workload's requests are drawn once with `seed` (as `simulate` draws them for one replica
    serving the whole workload), or given as `requests` (a trace: its window by default; outputs as
    generated unless `outputs_requested`, as `simulate` replays). `weighted-random` routes them all up front
    (its draws seeded apart from the workload's) and runs the replicas on their own, on `workers`
    processes (default: all cores) or on Ray (`use_ray`); `least-outstanding` and `affinity` run them
    together in this process (`lockstep`). The same inputs give the same result whatever the workers."""
    if isinstance(profile, str):
        profile = load_profile(profile)
    duration_s = check_cluster_run(spec, profile, router=router, duration_s=duration_s, use_ray=use_ray,
                                   spill_threshold=spill_threshold, sample_interval_s=sample_interval_s,
                                   requests=requests)
    replayed = requests is not None
    workload = spec.workload
    if requests is None:
        requests = generate_requests(workload, duration_s, seed, model_name=profile.tokenizer or profile.name)
    duration_ns = int(round(duration_s * NS_PER_S))
    arrival_ns = arrival_times_ns(requests.arrival_s, duration_s)
    keep = np.flatnonzero(arrival_ns < duration_ns)  # later arrivals are never sent
    requests = _subset(requests, keep, np.arange(len(workload.adapters)))
    arrival_ns = arrival_ns[keep]
    index = workload.adapter_index()
    weights = [spec.routing[a.id] for a in workload.adapters]
    holders = [sorted(w) for w in weights]
    adapter = requests.adapter.astype(np.int64)
    lengths_name = _lengths_name(workload, profile, replayed=replayed)
    if outputs_requested is None:
        outputs_requested = not replayed

    def task(r: int, idx: np.ndarray) -> ReplicaTask:
        replica = spec.replicas[r]
        local = np.full(len(workload.adapters), -1, np.int64)
        for position, a in enumerate(replica.adapters):
            local[index[a]] = position
        sub = _replica_workload(workload, replica.adapters)
        return ReplicaTask(sub, replica.server, profile, _subset(requests, idx, local), duration_s, seed,
                           sample_interval_s, starvation_threshold, lengths_name, outputs_requested)

    if router == "weighted-random":
        routes = weighted_routes(adapter, weights, seed)
        tasks = [task(r, np.flatnonzero(routes == r)) for r in range(len(spec.replicas))]
        results = _run_apart(tasks, workers, use_ray)
    else:
        holds = [np.isin(adapter, [index[a] for a in replica.adapters]) for replica in spec.replicas]
        runs = [ReplicaRun(_prepare(task(r, np.flatnonzero(h)))) for r, h in enumerate(holds)]
        del holds
        single = np.array([h[0] if len(h) == 1 else -1 for h in holders], np.int64)
        homes = [spec.home(a.id) for a in workload.adapters]
        rule = LEAST_OUTSTANDING if router == "least-outstanding" else AFFINITY
        routes = run_lockstep(runs, single[adapter], arrival_ns, adapter, holders, homes, rule, spill_threshold,
                              duration_ns)
        results = [run.result(starvation_threshold) for run in runs]
    return ClusterResult(spec=spec, router=router, duration_s=duration_s, seed=seed, replicas=results,
                         routes=routes, request_adapter=adapter, spill_threshold=spill_threshold)


def check_cluster_run(spec: ClusterSpec, profile: Profile, *, router: str = "weighted-random",
                      duration_s: float | None = None, use_ray: bool = False,
                      spill_threshold: int = DEFAULT_SPILL_THRESHOLD,
                      sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
                      requests: RequestTable | None = None, source: str | None = None) -> float:
    """Refuse, before anything runs, a cluster run that `simulate_cluster` would refuse: the router's flags,
    the window (its default resolved and returned), every replica's vLLM flags (named as `source`'s
    `gpus[i]`, a placement file's entries, when given), and work beyond the limits."""
    check_router(router, spill_threshold, use_ray)
    if duration_s is None:
        duration_s = DEFAULT_DURATION_S if requests is None else trace_window_s(requests)
    if not duration_s > 0:
        raise InputError(f"--duration must be > 0 seconds, got {duration_s}")
    _check_clock(duration_s)
    for i, replica in enumerate(spec.replicas):
        try:
            resolve_server(replica.server, _replica_workload(spec.workload, replica.adapters), profile)
        except LoratwinError as err:
            where = f"{source}: gpus[{i}] ({replica.name})" if source else replica.name
            raise type(err)(f"{where}: {err}") from None
    _check_cluster_size(spec, profile, duration_s, sample_interval_s, requests)
    return duration_s


def _replica_workload(workload: WorkloadSpec, adapters: tuple[str, ...]) -> WorkloadSpec:
    """The workload of one replica: the adapters it holds, in its order."""
    index = workload.adapter_index()
    return workload.model_copy(update={"adapters": tuple(workload.adapters[index[a]] for a in adapters)})


def _check_cluster_size(spec: ClusterSpec, profile: Profile, duration_s: float, sample_interval_s: float,
                        requests: RequestTable | None) -> None:
    """Refuse a cluster too large for the memory limit before its requests are drawn: every replica's
    run is held at once (the lockstep loop runs them together; the others gather their results)."""
    from loratwin import budget
    from loratwin.twin.simulation import _most_steps
    from loratwin.workload.describe import expected_mean_rates

    n = len(spec.replicas)
    if requests is None:
        expected = budget.requests_bound(float(expected_mean_rates(spec.workload, duration_s).sum()) * duration_s)
    else:
        expected = len(requests)
    budget.require(budget.simulation_estimate(
        sum(len(r.adapters) for r in spec.replicas), expected, duration_s, steps=n * _most_steps(profile, duration_s),
        samples=n * (duration_s / sample_interval_s + 2), sample_interval_s=sample_interval_s))


def _run_apart(tasks: list[ReplicaTask], workers: int | None, use_ray: bool) -> list[RunResult]:
    """Independent replicas on local processes or Ray; results in the tasks' order."""
    if use_ray:
        try:
            import ray
        except ImportError:
            raise InputError("--ray needs Ray: pip install 'loratwin[ray]' (or pip install ray)") from None
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(num_cpus=workers or None, include_dashboard=False, log_to_driver=False)
        try:
            remote = ray.remote(num_cpus=1, max_retries=0)(run_replica)
            return ray.get([remote.remote(t) for t in tasks])
        finally:
            if started_here:
                ray.shutdown()
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    # the busiest replicas first, so that the workers finish together
    order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i].requests))
    if workers <= 1:
        done = [run_replica(tasks[i]) for i in order]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(run_replica, [tasks[i] for i in order]))
    results: list[RunResult | None] = [None] * len(tasks)
    for i, result in zip(order, done):
        results[i] = result
    return results  # type: ignore[return-value]


