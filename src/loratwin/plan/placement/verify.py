"""Verification of a placement with the twin: every GPU's share simulated at its configuration and
judged by the same acceptance rule as the placement, on the twin's numbers."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from loratwin.plan.judge import AcceptanceRule, resolve_profile, twin_prediction
from loratwin.plan.placement.result import Placement
from loratwin.profiles import Profile
from loratwin.slo import slo_status
from loratwin.twin.config import REFERENCE_CLIENT_MAX_WAITING
from loratwin.workload import WorkloadSpec


@dataclass
class VerifiedGpu:
    index: int
    served: int
    max_loras: int
    offered_tok_s: float
    total_tok_s: float
    throughput_over_offered: float
    starved: bool  # by the published rule alone (1 - throughput / offered >= threshold)
    accepted: bool  # by the whole acceptance rule on the twin's numbers
    deciding: str  # the limit that decides it, with its value
    starved_adapters: list[str]
    predicted_tok_s: float
    mean_ttft_s: float | None = None  # None when no request finished
    p99_ttft_s: float | None = None
    # mean TTFT of requests sent while their adapter had none unfinished: the twin's counterpart
    # of the predicted wait for a place in the batch
    idle_start_ttft_s: float | None = None
    # each SLO of the rule on the twin's numbers (loratwin.slo.slo_status) and the run's goodput
    slos: list[dict[str, Any]] | None = None
    goodput_req_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Verification:
    """The twin's run of every GPU of a placement."""

    duration_s: float
    seed: int
    gpus: list[VerifiedGpu]
    elapsed_s: float
    cluster: dict[str, Any] | None = None  # the cluster twin's totals (ClusterResult.totals), with a router

    @property
    def starved_gpus(self) -> list[int]:
        return [g.index for g in self.gpus if g.starved]

    @property
    def refused_gpus(self) -> list[int]:
        return [g.index for g in self.gpus if not g.accepted]

    @property
    def gpus_with_starved_adapters(self) -> list[int]:
        return [g.index for g in self.gpus if g.starved_adapters]

    @property
    def total_tok_s(self) -> float:
        return math.fsum(g.total_tok_s for g in self.gpus)

    @property
    def offered_tok_s(self) -> float:
        return math.fsum(g.offered_tok_s for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "seed": self.seed,
            "starved_gpus": self.starved_gpus,
            "refused_gpus": self.refused_gpus,
            "gpus_with_starved_adapters": self.gpus_with_starved_adapters,
            "total_tok_s": self.total_tok_s,
            "offered_tok_s": self.offered_tok_s,
            "elapsed_s": self.elapsed_s,
            "gpus": [g.to_dict() for g in self.gpus],
            **({"cluster": self.cluster} if self.cluster is not None else {}),
        }


def verify_placement(
    placement: Placement,
    profile: Profile | str,
    duration_s: float = 3600.0,
    *,
    rule: AcceptanceRule | None = None,
    seed: int = 0,
    workers: int | None = None,
    client_max_waiting: int | None = REFERENCE_CLIENT_MAX_WAITING,
    router: str | None = None,
    workload: WorkloadSpec | None = None,
) -> Verification:
    """Simulate every GPU's share with the twin at its configuration for `duration_s`, and judge it
    by `rule` (the default limits when None). Runs in parallel on `workers` processes.

    The default window is the reference measurements' hour: only requests finished inside the
    window count, so a short window undercounts GPUs whose requests take tens of seconds (many
    adapters, long steps) and can flag them although they keep up.

    With a `router` (loratwin.twin.cluster.ROUTERS) the GPUs run as one cluster (the cluster twin):
    `workload`'s requests (default: the placement's adapters) drawn once and routed by the
    placement's routing weights (an adapter split evenly over the GPUs holding it when it has none);
    every GPU is judged by the same rule on its share, and the cluster's totals come with them."""
    started = time.perf_counter()
    profile = resolve_profile(profile)
    rule = rule or AcceptanceRule()
    limits = rule.limits(profile)
    cluster = None
    if router is not None:
        results, cluster = _cluster_results(placement, profile, workload, router, duration_s, seed, workers,
                                            client_max_waiting, rule.starvation_threshold)
        by_index = dict(enumerate(results))
    else:
        by_index = _apart_results(placement, profile, duration_s, seed, workers, client_max_waiting,
                                  rule.starvation_threshold)
    verified = []
    for i, g in enumerate(placement.gpus):
        r = by_index[i]
        judgement = rule.judge_with(limits, twin_prediction(r, g.max_loras))
        verified.append(VerifiedGpu(
            index=g.index,
            served=len(g.adapters),
            max_loras=g.max_loras,
            offered_tok_s=float(r.summary["offered_tok_s"]),
            total_tok_s=r.total_tok_s,
            throughput_over_offered=float(r.summary["throughput_over_offered"]),
            starved=r.starved,
            accepted=judgement.accepted,
            deciding=judgement.deciding,
            starved_adapters=r.starved_adapters,
            predicted_tok_s=g.predicted_tok_s,
            mean_ttft_s=r.mean_ttft_s,
            p99_ttft_s=r.p99_ttft_s,
            idle_start_ttft_s=r.idle_start_ttft_s,
            slos=slo_status(rule.slos, r.summary) if rule.slos else None,
            goodput_req_s=r.goodput_req_s(rule.slos) if rule.slos else None,
        ))
    return Verification(duration_s, seed, verified, time.perf_counter() - started, cluster)


def _apart_results(placement, profile, duration_s, seed, workers, client_max_waiting, threshold) -> dict:
    """Every GPU simulated on its own, on requests drawn for its adapters alone."""
    from loratwin.twin import ServerConfig
    from loratwin.twin.batch import SimulationTask, simulate_many

    tasks = []
    for g in placement.gpus:
        # a replica runs at its share of its adapter's rate (rate x routing weight): random routing of
        # Poisson arrivals is Poisson at that rate, exactly; other kinds are taken as the same kind at
        # the lower rate (placement.replicas)
        workload = WorkloadSpec(adapters=g.adapters, lengths=placement.lengths, arrival=placement.arrival)
        server = ServerConfig(max_loras=g.max_loras, max_cpu_loras=g.max_cpu_loras, max_lora_rank=g.max_lora_rank,
                              client_max_waiting=client_max_waiting)
        tasks.append(SimulationTask(workload, server, profile, duration_s=duration_s, seed=seed,
                                    starvation_threshold=threshold))
    # the slowest runs first, so that the workers finish together
    order = sorted(range(len(tasks)), key=lambda i: -placement.gpus[i].offered_tok_s)
    results = simulate_many([tasks[i] for i in order], workers=workers or 2)
    return dict(zip(order, results))


def _cluster_results(placement, profile, workload, router, duration_s, seed, workers, client_max_waiting, threshold):
    """Every GPU's RunResult (in the placement's order) and the cluster's totals, from the cluster twin."""
    from loratwin.plan.placement.read import placement_cluster
    from loratwin.twin.cluster import simulate_cluster

    if workload is None:  # the placement's adapters, each at the sum of its replicas' shares of the rate
        first, rate = {}, {}
        for g in placement.gpus:
            for a in g.adapters:
                first.setdefault(a.id, a)
                rate[a.id] = rate.get(a.id, 0.0) + a.rate_req_s
        adapters = tuple(a.model_copy(update={"rate_req_s": rate[a.id]}) for a in first.values())
        workload = WorkloadSpec(adapters=adapters, lengths=placement.lengths, arrival=placement.arrival)
    spec = placement_cluster(placement.to_dict(), workload, "the placement", client_max_waiting=client_max_waiting)
    result = simulate_cluster(spec, profile, router=router, duration_s=duration_s, seed=seed, workers=workers or 2,
                              starvation_threshold=threshold)
    return result.replicas, result.totals()
