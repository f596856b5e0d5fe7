"""Re-placement: the running placement adapted to new rates with the fewest adapters moved.

    from loratwin.plan.placement.replace import replace
    result = replace(old_placement, new_adapters, "llama-3.1-8b-instruct")
    result.placement, result.moves, result.fresh_moves

Every adapter stays on its GPU unless the acceptance rule (the same check and ShareJudge as
`place`) refuses that GPU under the new rates. Off each refused GPU go the fewest adapters whose
removal makes it accepted: the count is the fewest of the hottest-first removals (bisection over
the rate order: taking off the busiest adapters relieves a GPU most); at that count each adapter
taken off is swapped for the coldest one left whose removal still works (a cold adapter moves the
fewest requests onto a server that must load it; ties: the cheaper load). Those adapters and the
new ones go, hottest first, onto the accepted GPU that stays accepted with the least strain (a GPU
that keeps its --max-loras before one that would restart); what no GPU takes fills new GPUs with
the greedy. Vanished adapters are dropped without a move; a GPU left empty is freed.

Replicas (`replicas`): an adapter served from several GPUs keeps every replica on its GPU, its
requests split evenly over them again (the routing weights re-balanced); one that needs more
replicas at its new rate than it has (as `place` splits) gets the extra ones placed like new
adapters, on GPUs that do not hold it. A replica placed on a GPU, or taken off one, is a move.
Replicas are not dropped when an adapter cools down (that would be a move too).

A fresh placement of the same adapters is made too, its GPUs matched to the old ones (the most
adapters kept, `moves.match_gpus`): its moves are reported, and it is taken instead when it moves
fewer adapters (`chosen` says which). A GPU keeps its --max-loras where the rule still accepts it;
otherwise the rule chooses again and the GPU is listed in `restarts`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loratwin.errors import InputError
from loratwin.plan.judge import GpuCheck, resolve_profile
from loratwin.plan.placement.fill import greedy_bins, largest_prefix
from loratwin.plan.placement.moves import Move, Running, gpus_of, match_gpus, moves_between, renamed, restarted
from loratwin.plan.placement.place import as_workload, default_check, gpu_plan, place, split_for_gpus
from loratwin.plan.placement.result import DEFAULT_ADAPTER_DIR, Placement
from loratwin.plan.placement.search import DEFAULT_SEARCH_MOVES
from loratwin.plan.placement.shares import ShareJudge
from loratwin.profiles import Profile
from loratwin.workload import AdapterSpec, WorkloadSpec


@dataclass
class Replacement:
    """A re-placement: the new placement, what it moved and what a fresh placement would move."""

    placement: Placement
    moves: list[Move]
    added: list[Move]  # adapters new to the placement, with the load each costs
    dropped: list[str]  # adapters that vanished from the input
    restarts: list[int]  # GPUs whose --max-loras or --max-lora-rank changed (the server restarts)
    refused: list[int]  # old GPUs the rule refuses under the new rates, as they were
    freed: list[int]  # old GPUs left without adapters
    fresh_moves: int  # what a fresh placement of the same adapters would move (its GPUs matched)
    fresh_gpus: int
    chosen: str  # "kept" (the adapters stay where the rule allows) or "fresh"
    notes: list[str] = field(default_factory=list)

    @property
    def moved_load_ms(self) -> float:
        return sum(m.load_ms for m in self.moves)

    def to_dict(self) -> dict[str, Any]:
        doc = self.placement.to_dict()
        doc.update({
            "replaced_from": {"chosen": self.chosen, "refused_gpus": self.refused, "freed_gpus": self.freed,
                              "restarts": self.restarts, "dropped": self.dropped, "notes": self.notes},
            "moves": [m.to_dict() for m in self.moves],
            "added": [m.to_dict() for m in self.added],
            "move_count": len(self.moves),
            "moved_load_ms": self.moved_load_ms,
            "added_load_ms": sum(m.load_ms for m in self.added),
            "fresh_moves": self.fresh_moves,
            "fresh_gpus": self.fresh_gpus,
        })
        return doc


def replace(old: Placement | Running, adapters: Sequence[AdapterSpec] | WorkloadSpec, profile: Profile | str,
            check: GpuCheck | None = None, search_moves: int = DEFAULT_SEARCH_MOVES, source: str = "--from") -> Replacement:
    """`old` (a placement, or what `read_running` reads of a placement file) adapted to `adapters`
    (their new rates; new ones may appear, old ones vanish) with the fewest adapters moved, every
    GPU accepted by `check`'s rule (see the module's docstring). `source` names `old` in errors."""
    started = time.perf_counter()
    adapter_dir = old.adapter_dir if isinstance(old, Placement) else DEFAULT_ADAPTER_DIR
    old = old if isinstance(old, Running) else Running.of(old)
    workload = as_workload(adapters)
    profile = resolve_profile(profile)
    if old.profile != profile.name:
        raise InputError(f"{source}: the placement was made for profile {old.profile!r}, not {profile.name!r}; "
                         f"give --profile {old.profile} or place afresh")
    check = check or default_check(profile, workload)
    before = gpus_of(old)
    items, weights, homes = _replicas(workload, before, check, profile)
    judge = ShareJudge(check, profile, items)
    bins: dict[int, list[int]] = {g.index: [] for g in old.gpus}
    pool = []
    for i, home in enumerate(homes):
        (bins[home] if home is not None else pool).append(i)
    freed = [g for g, members in bins.items() if not members]
    bins = {g: members for g, members in bins.items() if members}
    refused = [g for g, members in bins.items() if not judge.ok(members)]
    for g in refused:
        bins[g], off = fewest_off(judge, bins[g])
        pool += off
    first_new = max((g.index for g in old.gpus), default=-1) + 1
    old_slots = {g.index: g.max_loras for g in old.gpus}
    _place_pool(judge, bins, pool, old_slots, first_new)
    routing: dict[str, dict[int, float]] = {a.id: {} for a in workload.adapters}
    for g, members in sorted(bins.items()):
        for i in members:
            routing[items[i].id][g] = weights[i]
    fresh = place(workload, profile, check=check, search_moves=search_moves)
    kept = _placement(adapter_dir, fresh, [gpu_plan(g, bins[g], judge, old_slots.get(g)) for g in sorted(bins)],
                      routing)
    fresh_gpus, fresh_routing = renamed(fresh, match_gpus(before, fresh, first_new))
    fresh_matched = _placement(adapter_dir, fresh, fresh_gpus, fresh_routing)
    kept_moves, added = moves_between(before, kept, profile)
    fresh_moves, fresh_added = moves_between(before, fresh_matched, profile)
    chosen, result = "kept", kept
    if len(fresh_moves) < len(kept_moves):
        chosen, result, kept_moves, added = "fresh", fresh_matched, fresh_moves, fresh_added
    notes = [n for n in fresh.notes if "split into replicas" in n] if chosen == "fresh" else []
    if chosen == "fresh":
        notes.append(f"a fresh placement moves fewer adapters ({len(fresh_moves)}) than keeping them where the "
                     "rule allows: it is taken, its GPUs matched to the old ones")
    result.notes = notes
    result.elapsed_s = time.perf_counter() - started
    return Replacement(
        placement=result, moves=kept_moves, added=added,
        dropped=sorted(set(before) - {a.id for a in workload.adapters}),
        restarts=restarted(old, result), refused=sorted(refused), freed=sorted(freed),
        fresh_moves=len(fresh_moves), fresh_gpus=fresh.gpu_count, chosen=chosen, notes=notes,
    )


def _replicas(workload: WorkloadSpec, before: dict[str, set[int]], check: GpuCheck,
              profile: Profile) -> tuple[list[AdapterSpec], list[float], list[int | None]]:
    """What to place: one item per replica (`replicas`: the same id and rank, an even share of the
    rate), its weight, and the GPU it stays on (None: to be placed). A replicated adapter keeps
    every replica on its GPU, its weights evened out; one that needs more replicas at its new rate
    (`split_for_gpus`, as `place` splits) gets the extra ones to place."""
    needed = split_for_gpus(lambda a: check.evaluate([a], profile), profile.name, workload.adapters).replicas
    items: list[AdapterSpec] = []
    weights: list[float] = []
    homes: list[int | None] = []
    for a in workload.adapters:
        gpus = sorted(before.get(a.id, ()))
        n = max(needed.get(a.id, 1), len(gpus))
        share = a if n == 1 else a.model_copy(update={"rate_req_s": a.rate_req_s / n})
        for k in range(n):
            items.append(share)
            weights.append(1.0 / n)
            homes.append(gpus[k] if k < len(gpus) else None)
    return items, weights, homes


def fewest_off(judge: ShareJudge, members: list[int]) -> tuple[list[int], list[int]]:
    """(kept, taken off): the fewest of `members` to take off for the rule to accept the rest,
    the coldest (then cheapest to load) such choice. Acceptance is taken as monotone in the rates,
    as the greedy's fill takes it; the result is always judged."""
    adapters = judge.adapters

    def cost(i: int) -> tuple[float, int, int]:  # colder, then smaller (a lower rank loads faster)
        return adapters[i].rate_req_s, adapters[i].rank, i

    coldest_first = sorted(members, key=cost)
    keep = largest_prefix(coldest_first, judge.ok, hint=len(members) - 1, whole_first=False)
    if keep == 0:  # not even its coldest adapter alone: cannot happen once check_each_alone passed
        return [], coldest_first
    kept, off = coldest_first[:keep], coldest_first[keep:]
    for taken in sorted(off, key=cost, reverse=True):  # hottest taken first: the most to gain by a swap
        # the coldest kept adapter whose removal (with `taken` back on) is accepted: a suffix of the
        # kept adapters by rate, found by bisection
        candidates = [c for c in kept if cost(c) < cost(taken)]
        if not candidates:
            continue
        rest = [i for i in kept if i not in candidates]

        def works(k: int, candidates=candidates, rest=rest, taken=taken) -> bool:
            return judge.ok([*rest, *candidates[:k], *candidates[k + 1:], taken])

        lo, hi = 0, len(candidates) - 1
        if not works(hi):
            continue
        while lo < hi:  # the first k that works
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if works(mid) else (mid + 1, hi)
        swapped = candidates[lo]
        kept = sorted([*(i for i in kept if i != swapped), taken], key=cost)
        off = [*(i for i in off if i != taken), swapped]
    return kept, off


def _place_pool(judge: ShareJudge, bins: dict[int, list[int]], pool: list[int], old_slots: dict[int, int],
                first_new: int) -> None:
    """Each adapter of `pool`, busiest first, onto the GPU that stays accepted with the least
    strain (one keeping its --max-loras first); the rest onto new GPUs filled by the greedy."""
    adapters = judge.adapters
    left = []
    for i in sorted(pool, key=lambda i: (-adapters[i].rate_req_s, i)):
        best = None
        for g, members in bins.items():
            verdict = judge([*members, i])
            if not verdict.ok:
                continue
            same = verdict.option(old_slots[g]) if g in old_slots else None
            key = (0 if same is not None and same.accepted else 1, verdict.strain, g)
            best = key if best is None or key < best else best
        if best is None:
            left.append(i)
        else:
            bins[best[2]].append(i)
    if left:
        sub = ShareJudge(judge.check, judge.profile, [adapters[i] for i in left])
        for k, members in enumerate(greedy_bins(sub)):
            bins[first_new + k] = [left[m] for m in members]


def _placement(adapter_dir: str, fresh: Placement, gpus: list, routing: dict[str, dict[int, float]]) -> Placement:
    return Placement(
        profile=fresh.profile, model=fresh.model, algorithm="re-placement", check=fresh.check, gpus=gpus,
        lower_bound=fresh.lower_bound, elapsed_s=0.0, notes=[], lengths=fresh.lengths, arrival=fresh.arrival,
        adapter_dir=adapter_dir, serve_arguments=fresh.serve_arguments, slos=fresh.slos, routing=routing,
    )
