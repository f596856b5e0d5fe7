"""Replicas of adapters too busy for one GPU, and the routing table that splits their requests.

An adapter the acceptance rule refuses alone on a GPU at its rate, at every max_loras, is split
into the fewest replicas each of which one GPU accepts alone: its rate divided evenly over them
(`replica_count`). Every replica keeps the adapter's id and rank and carries rate x weight, its
weight being 1 / replicas: the share of the adapter's requests a router sends to that GPU.
The replicas of one adapter go to different GPUs (`shares.ShareJudge` refuses a GPU holding one
adapter twice, so every algorithm keeps them apart). Only adapters that cannot be served whole
are split: a split adapter loads and holds a slot on each of its GPUs, so splitting for balance
alone would cost slots and loads on every GPU it touches.

The GPU's share of a split adapter is judged as the adapter's own arrival process at rate x
weight. A router that sends each request to a GPU at random with the weights (independently per
request) thins the adapter's stream: for Poisson arrivals each GPU then sees a Poisson stream at
rate x weight, exactly. For other arrival kinds (gamma gaps, unpredictable) the same kind of
process at the lower rate is assumed: random thinning keeps the mean rate but makes the gaps less
variable (closer to Poisson), so a bursty replica is judged, if anything, burstier than it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from loratwin.errors import InputError
from loratwin.plan.judge import GpuVerdict
from loratwin.workload import AdapterSpec

# a replica refused alone at this rate (req/s) is refused at any rate: no split serves the adapter
NO_TRAFFIC_REQ_S = 1e-6
# the most replicas one adapter is split into
MAX_REPLICAS = 4096


@dataclass(frozen=True)
class Split:
    """What a placement places: every adapter whole, or as replicas (same id and rank, rate x
    weight), with each item's weight (its share of its adapter's requests)."""

    items: list[AdapterSpec]
    weights: list[float]
    replicas: dict[str, int] = field(default_factory=dict)  # adapter id -> replicas, split adapters only

    def routing(self, bins: Sequence[Sequence[int]]) -> dict[str, dict[int, float]]:
        """adapter id -> {GPU index: weight} for bins of item indices (GPU g = bins[g]); every adapter
        placed, its weights summing to 1."""
        table: dict[str, dict[int, float]] = {a.id: {} for a in self.items}  # in the workload's order
        for gpu, members in enumerate(bins):
            for i in members:
                table[self.items[i].id][gpu] = self.weights[i]
        return {a: dict(sorted(gpus.items())) for a, gpus in table.items()}

    def note(self) -> list[str]:
        if not self.replicas:
            return []
        largest = max(self.replicas.items(), key=lambda kv: kv[1])  # the first of the largest
        return [f"{len(self.replicas)} adapter{'s' if len(self.replicas) != 1 else ''} too busy for one GPU "
                f"split into replicas on different GPUs, requests routed evenly (largest: {largest[0]!r} "
                f"over {largest[1]} GPUs; the routing table gives each adapter's GPUs and weights)"]


def split_busy(adapters: Sequence[AdapterSpec], alone: Callable[[AdapterSpec], GpuVerdict],
               refuse: Callable[[AdapterSpec, GpuVerdict], InputError]) -> Split:
    """Each adapter whole, or, when `alone` (the verdict of one GPU serving it alone) refuses it at
    its rate, its fewest replicas (`replica_count`); `refuse` makes the error for an adapter that
    no number of replicas serves. Acceptance alone is taken as monotone in the rate: per rank, the
    busiest adapters are tried until one is accepted."""
    refused: set[int] = set()
    by_rank: dict[int, list[int]] = {}
    for i, a in enumerate(adapters):
        by_rank.setdefault(a.rank, []).append(i)
    for members in by_rank.values():
        for i in sorted(members, key=lambda i: (-adapters[i].rate_req_s, i)):
            if alone(adapters[i]).ok:
                break
            refused.add(i)
    items: list[AdapterSpec] = []
    weights: list[float] = []
    replicas: dict[str, int] = {}
    for i, a in enumerate(adapters):
        if i not in refused:
            items.append(a)
            weights.append(1.0)
            continue
        n = replica_count(a, alone, refuse)
        replicas[a.id] = n
        share = a.model_copy(update={"rate_req_s": a.rate_req_s / n})
        items.extend([share] * n)
        weights.extend([1.0 / n] * n)
    return Split(items, weights, replicas)


def replica_count(adapter: AdapterSpec, alone: Callable[[AdapterSpec], GpuVerdict],
                  refuse: Callable[[AdapterSpec, GpuVerdict], InputError]) -> int:
    """The fewest replicas n >= 2 at which one GPU accepts the adapter alone at rate / n (doubling,
    then bisecting: a lower rate is taken never to be refused where a higher one is accepted)."""

    def fits(n: int) -> bool:
        return alone(adapter.model_copy(update={"rate_req_s": adapter.rate_req_s / n})).ok

    idle = alone(adapter.model_copy(update={"rate_req_s": min(adapter.rate_req_s, NO_TRAFFIC_REQ_S)}))
    if not idle.ok:
        raise refuse(adapter, idle)
    bad, good = 1, 2
    while not fits(good):
        bad, good = good, good * 2
        if good > MAX_REPLICAS:
            raise InputError(f"adapter {adapter.id!r} ({adapter.rate_req_s:g} req/s) would need more than "
                             f"{MAX_REPLICAS} replicas; check its rate")
    while good - bad > 1:
        mid = (good + bad) // 2
        bad, good = (bad, mid) if fits(mid) else (mid, good)
    return good

