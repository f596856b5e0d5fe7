"""Placement algorithms, by name. Each takes a `PlacementRun` (the adapters, the share judge, the
lower bound, notes) and a GPU count (None: as few as it can) and returns bins of adapter indices.

- greedy (the follow-up paper's): GPUs filled in turn in `fill.fill_order`, each with as many
  adapters as the rule accepts; then a search moving adapters between GPUs to free GPUs; with a
  GPU count, the load spread evenly over them.
- round-robin: adapter i on GPU i mod N.
- least-loaded (dLoRA-like): busiest adapters first, each on the GPU with the least offered load.
- rank-grouped (LoRAServe-like): one pool of GPUs per rank, least-loaded inside each pool.
- exact: branch and bound over all assignments (up to EXACT_MAX_ADAPTERS adapters).
Baselines have no GPU count of their own: without one, each gets the fewest GPUs at which its
assignment is accepted on every GPU.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loratwin.errors import InputError
from loratwin.plan.placement.fill import greedy_bins, rank_groups
from loratwin.plan.placement.search import free_gpus
from loratwin.plan.placement.shares import ShareJudge
from loratwin.plan.placement.spread import spread_evenly
from loratwin.workload import AdapterSpec

EXACT_MAX_ADAPTERS = 12
# GPUs whose pressures differ by more than this are pointed to --gpus, which evens them.
UNEVEN_PRESSURE = 0.3

Bins = list[list[int]]


@dataclass
class PlacementRun:
    """What an algorithm works with."""

    judge: ShareJudge
    search_moves: int
    bound: Callable[[], int]  # the lower bound on the GPU count (worked out beside the algorithm)
    notes: list[str]

    @property
    def items(self) -> list[AdapterSpec]:
        return self.judge.adapters

    def all_ok(self, bins: Bins) -> bool:
        return all(self.judge.ok(b) for b in bins if b)

    def not_enough(self, gpus: int, needed: int | None, algorithm: str) -> InputError:
        if needed is None:
            return InputError(
                f"--gpus {gpus} is not enough: the {algorithm} placement finds no assignment the rule accepts "
                f"on any GPU count (lower bound: {self.bound()} GPUs)"
            )
        return InputError(
            f"--gpus {gpus} is not enough for these adapters: the {algorithm} placement needs {needed} GPUs "
            f"(lower bound: {self.bound()})"
        )


def greedy(run: PlacementRun, gpus: int | None) -> Bins:
    judge = run.judge
    bins = greedy_bins(judge)
    target = max(1, run.bound()) if gpus is None else gpus  # no search below the bound or the GPUs asked for
    # with a slow estimator (the twin) every move would cost a hundred simulations: the greedy alone
    if run.search_moves and len(bins) > target and judge.check.fast:
        found, moves = free_gpus(judge, [a.rate_req_s for a in run.items], bins, run.search_moves, down_to=target)
        if len(found) < len(bins):  # every GPU it returns is accepted
            run.notes.append(f"a search moving adapters between GPUs freed {len(bins) - len(found)} of the greedy's "
                             f"{len(bins)} GPUs ({moves} moves)")
            bins = found
    if gpus is None:
        run.notes.extend(_uneven_note(judge, bins))
        return bins
    if len(bins) > gpus:
        raise run.not_enough(gpus, len(bins), "greedy")
    return spread_evenly(judge, gpus, bins, run.notes)


def exact(run: PlacementRun, gpus: int | None) -> Bins:
    n = len(run.items)
    if n > EXACT_MAX_ADAPTERS:
        raise InputError(f"--algorithm exact places at most {EXACT_MAX_ADAPTERS} adapters, got {n}; use greedy")
    greedy_found = greedy_bins(run.judge)
    found = _branch_and_bound(run.judge, n, len(greedy_found))
    bins = found if found is not None else greedy_found
    if gpus is not None:
        if len(bins) > gpus:
            raise run.not_enough(gpus, len(bins), "exact")
        if len(bins) < gpus:
            run.notes.append(f"{len(bins)} GPUs suffice; the other {gpus - len(bins)} stay free")
    return bins


def round_robin_bins(n_gpus: int, adapters: Sequence[AdapterSpec]) -> Bins:
    return [list(range(g, len(adapters), n_gpus)) for g in range(n_gpus)]


def least_loaded_bins(n_gpus: int, adapters: Sequence[AdapterSpec], members: Sequence[int] | None = None) -> Bins:
    members = list(range(len(adapters))) if members is None else list(members)
    bins: Bins = [[] for _ in range(n_gpus)]
    load = [0.0] * n_gpus
    held: list[set[str]] = [set() for _ in range(n_gpus)]  # ids on each GPU: a replica avoids its siblings' GPUs
    for i in sorted(members, key=lambda i: (-adapters[i].rate_req_s, i)):
        name = adapters[i].id
        g = min(range(n_gpus), key=lambda g: (name in held[g], load[g], len(bins[g]), g))
        bins[g].append(i)
        load[g] += adapters[i].rate_req_s
        held[g].add(name)
    return bins


def _fixed_rule(name: str, assign: Callable[[int, Sequence[AdapterSpec]], Bins]):
    """An algorithm that deals adapters over a given GPU count: the fewest counts it needs, or the
    given count."""

    def algorithm(run: PlacementRun, gpus: int | None) -> Bins:
        n = len(run.items)
        deal = functools.partial(assign, adapters=run.items)
        if gpus is None:
            found = _fewest(deal, run, run.bound(), n)
            if found is None:
                raise InputError(f"the {name} placement is refused on some GPU even with one adapter per GPU")
            return found[1]
        bins = deal(min(gpus, n))
        if not run.all_ok(bins):
            found = _fewest(deal, run, gpus + 1, n)
            raise run.not_enough(gpus, found[0] if found else None, name)
        return bins

    return algorithm


def _fewest(assign: Callable[[int], Bins], run: PlacementRun, start: int, limit: int) -> tuple[int, Bins] | None:
    """The smallest GPU count from `start` whose assignment is accepted on every GPU."""
    for n in range(max(1, start), limit + 1):
        bins = assign(n)
        if run.all_ok(bins):
            return n, bins
    return None


def rank_grouped(run: PlacementRun, gpus: int | None) -> Bins:
    items = run.items
    counts = {}
    for rank, members in rank_groups(items).items():
        found = _fewest(functools.partial(least_loaded_bins, adapters=items, members=members), run, 1, len(members))
        if found is None:
            raise InputError("the rank-grouped placement is refused on some GPU even with one adapter per GPU")
        counts[rank] = found[0]
    if gpus is not None:
        if sum(counts.values()) > gpus:
            raise run.not_enough(gpus, sum(counts.values()), "rank-grouped")
        counts = _spread_rank_groups(counts, gpus, items)
    bins = []
    for rank, members in rank_groups(items).items():
        bins.extend(least_loaded_bins(counts[rank], items, members))
    return bins


def _spread_rank_groups(counts: dict[int, int], n_gpus: int, adapters: Sequence[AdapterSpec]) -> dict[int, int]:
    """Extra GPUs go one by one to the rank pool with the most load per GPU."""
    counts = dict(counts)
    groups = rank_groups(adapters)
    loads = {r: math.fsum(adapters[i].rate_req_s for i in m) for r, m in groups.items()}
    while sum(counts.values()) < n_gpus:
        open_pools = [r for r in counts if counts[r] < len(groups[r])]
        if not open_pools:
            break
        r = max(open_pools, key=lambda r: (loads[r] / counts[r], r))
        counts[r] += 1
    return counts


def _branch_and_bound(judge: ShareJudge, n: int, limit: int) -> Bins | None:
    """Fewest bins: busiest adapters first, each into an existing bin the rule still accepts or
    into the next empty bin (empty bins are interchangeable)."""
    order = sorted(range(n), key=lambda i: -judge.adapters[i].rate_req_s)
    for k in range(1, limit + 1):
        bins: Bins = []
        if _branch(judge, order, 0, bins, k):
            return [list(b) for b in bins]
    return None


def _branch(judge: ShareJudge, order: list[int], pos: int, bins: Bins, k: int) -> bool:
    if pos == len(order):
        return True
    i = order[pos]
    for b in bins:
        b.append(i)
        if judge.ok(b) and _branch(judge, order, pos + 1, bins, k):
            return True
        b.pop()
    if len(bins) < k:
        bins.append([i])
        if judge.ok(bins[-1]) and _branch(judge, order, pos + 1, bins, k):
            return True
        bins.pop()
    return False


def _uneven_note(judge: ShareJudge, bins: Bins) -> list[str]:
    """A note pointing to --gpus when the greedy's GPUs are far apart in pressure."""
    pressures = sorted(judge(b).chosen().pressure for b in bins)
    if len(pressures) < 2 or pressures[-1] - pressures[0] <= UNEVEN_PRESSURE:
        return []
    return [f"the greedy fills each GPU to its limit in turn (pressure on the tightest limit {pressures[0]:.2f} to "
            f"{pressures[-1]:.2f}); --gpus {len(bins)} spreads the load over the same GPUs"]


ALGORITHMS: dict[str, Callable[[PlacementRun, int | None], Bins]] = {
    "greedy": greedy,
    "round-robin": _fixed_rule("round-robin", round_robin_bins),
    "least-loaded": _fixed_rule("least-loaded", least_loaded_bins),
    "rank-grouped": rank_grouped,
    "exact": exact,
}
