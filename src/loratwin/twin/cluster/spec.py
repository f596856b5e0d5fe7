"""What a cluster is: replicas (a vLLM server each, with the adapters it holds) behind a router."""

from __future__ import annotations

import math
from dataclasses import dataclass

from loratwin.errors import InputError
from loratwin.twin.config import ServerConfig
from loratwin.workload import WorkloadSpec

ROUTERS = ("weighted-random", "least-outstanding", "affinity")
# affinity may spill a request to a less loaded replica once its home replica has more than this many
# requests outstanding (sent by the router, not finished). A GPU at a typical accepted load (the
# ring of benchmarks/cluster_speed.py: ~8.7 req/s, 22 adapters, --max-loras 8, llama profile) holds
# about 130 on average (36 running, 97 waiting for a place in the batch) and peaks near 210: twice
# the mean lets the home take its normal load and spills only when it queues beyond it.
DEFAULT_SPILL_THRESHOLD = 256
# the largest --spill-threshold: the routing loop holds it in a signed 64-bit integer (a threshold this high
# never spills: no GPU holds that many requests)
MAX_SPILL_THRESHOLD = 2**63 - 1
# weights of one adapter must sum to 1 within this
WEIGHT_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Replica:
    """One vLLM server of the cluster: its flags and the adapters it holds, in its start-up order
    (the first max_cpu_loras are loaded in the CPU cache, the last max_loras of those on the GPU)."""

    name: str  # how reports name it, e.g. "GPU 3"
    server: ServerConfig
    adapters: tuple[str, ...]


@dataclass(frozen=True)
class ClusterSpec:
    """Replicas behind a router, serving `workload` (one arrival stream per adapter).

    `routing[adapter_id][replica position] = weight`: the share of the adapter's requests the
    weighted-random router sends there, and the adapter's home (largest weight, first on ties) for
    the affinity router. Every adapter has an entry, its replicas hold it, its weights are > 0 and sum to 1."""

    workload: WorkloadSpec
    replicas: tuple[Replica, ...]
    routing: dict[str, dict[int, float]]

    def __post_init__(self) -> None:
        check_cluster(self)

    def holders(self, adapter_id: str) -> list[int]:
        """Replica positions holding the adapter, in position order."""
        return sorted(self.routing[adapter_id])

    def home(self, adapter_id: str) -> int:
        weights = self.routing[adapter_id]
        return min(weights, key=lambda r: (-weights[r], r))


def check_cluster(spec: ClusterSpec) -> None:
    """Refuse a cluster the twin cannot run, naming the replica or adapter."""
    if not spec.replicas:
        raise InputError("cluster: no replicas")
    known = {a.id for a in spec.workload.adapters}
    for replica in spec.replicas:
        if not replica.adapters:
            raise InputError(f"cluster: {replica.name} holds no adapters")
        if len(set(replica.adapters)) != len(replica.adapters):
            raise InputError(f"cluster: {replica.name} lists an adapter twice")
        unknown = [a for a in replica.adapters if a not in known]
        if unknown:
            raise InputError(f"cluster: {replica.name} holds adapters the workload does not have: {', '.join(unknown[:5])}")
    missing = [a for a in known if a not in spec.routing]
    if missing:
        raise InputError(f"cluster: adapters of the workload with no replica: {', '.join(sorted(missing)[:5])}")
    for adapter_id, weights in spec.routing.items():
        if adapter_id not in known:
            raise InputError(f"cluster: routing names {adapter_id!r}, which the workload does not have")
        if not weights:
            raise InputError(f"cluster: routing of {adapter_id!r} names no replica")
        for r, w in weights.items():
            if not 0 <= r < len(spec.replicas):
                raise InputError(f"cluster: routing of {adapter_id!r} names replica {r}, beyond the {len(spec.replicas)}")
            if adapter_id not in spec.replicas[r].adapters:
                raise InputError(f"cluster: routing sends {adapter_id!r} to {spec.replicas[r].name}, which does not hold it")
            if not (math.isfinite(w) and w > 0):
                raise InputError(f"cluster: routing weight of {adapter_id!r} on {spec.replicas[r].name} must be > 0, got {w}")
        total = math.fsum(weights.values())
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise InputError(f"cluster: routing weights of {adapter_id!r} must sum to 1, got {total:g}")
    for position, replica in enumerate(spec.replicas):
        for a in replica.adapters:
            if position not in spec.routing.get(a, {}):
                raise InputError(f"cluster: {replica.name} holds {a!r} but the routing sends it no request")


def even_routing(replicas: tuple[Replica, ...]) -> dict[str, dict[int, float]]:
    """Each adapter's requests split evenly over the replicas holding it."""
    holders: dict[str, list[int]] = {}
    for position, replica in enumerate(replicas):
        for a in replica.adapters:
            holders.setdefault(a, []).append(position)
    return {a: {r: 1.0 / len(rs) for r in rs} for a, rs in holders.items()}


def check_router(router: str, spill_threshold: int, use_ray: bool = False) -> None:
    """The router's flags; Ray runs only the state-free router (the others run their replicas together)."""
    if router not in ROUTERS:
        raise InputError(f"--router must be one of {', '.join(ROUTERS)}, got {router!r}")
    if isinstance(spill_threshold, bool) or not isinstance(spill_threshold, int) or not 0 <= spill_threshold <= MAX_SPILL_THRESHOLD:
        raise InputError(f"--spill-threshold must be an integer from 0 to {MAX_SPILL_THRESHOLD} (outstanding "
                         f"requests), got {spill_threshold!r}")
    if use_ray and router != "weighted-random":
        raise InputError(f"--ray: the {router} router reads every replica's state at each arrival, so its replicas "
                         "run together in one process; Ray runs the weighted-random router")
