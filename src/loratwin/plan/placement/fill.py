"""Filling a GPU: the order the greedy takes adapters in, and the most of them a GPU accepts.
Recommending for one GPU is this fill on one GPU; the greedy placement repeats it GPU by GPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from loratwin.errors import InputError
from loratwin.plan.placement.shares import ShareJudge
from loratwin.workload import AdapterSpec


def rank_groups(adapters: Sequence[AdapterSpec]) -> dict[int, list[int]]:
    """Adapter indices by rank, the largest rank first."""
    groups: dict[int, list[int]] = {}
    for i, a in enumerate(adapters):
        groups.setdefault(a.rank, []).append(i)
    return dict(sorted(groups.items(), key=lambda kv: -kv[0]))


def alternate_high_low(indices: list[int], rates: Sequence[float]) -> list[int]:
    """Highest rate, lowest, second highest, second lowest, ..."""
    by_rate = sorted(indices, key=lambda i: (-rates[i], i))
    out, lo, hi = [], 0, len(by_rate) - 1
    while lo <= hi:
        out.append(by_rate[lo])
        if lo != hi:
            out.append(by_rate[hi])
        lo += 1
        hi -= 1
    return out


def fill_order(adapters: Sequence[AdapterSpec]) -> list[int]:
    """The greedy's order: grouped by rank, largest first; inside a group alternately high and low
    rate (busy and quiet adapters share each GPU)."""
    rates = [a.rate_req_s for a in adapters]
    sequence: list[int] = []
    for members in rank_groups(adapters).values():
        sequence.extend(alternate_high_low(members, rates))
    return sequence


def largest_prefix(sequence: Sequence[int], accepts: Callable[[Sequence[int]], bool], hint: int = 1,
                   whole_first: bool = True) -> int:
    """The largest k with accepts(sequence[:k]), probing growing counts from `hint` then bisecting
    (acceptance is taken as monotone: more adapters never make a GPU safer). 0 if not even one.
    With `whole_first`, all of them when the whole is accepted, whatever the counts below: so one
    GPU takes a list exactly when the rule accepts the list on one GPU."""
    n = len(sequence)
    if whole_first and n and accepts(sequence):
        return n
    k = max(1, min(hint, n))
    if accepts(sequence[:k]):
        good, bad = k, n if whole_first else n + 1  # bad: the least count known refused
        while good < n and min(n, good * 2) < bad:
            probe = min(n, good * 2)
            if accepts(sequence[:probe]):
                good = probe
            else:
                bad = probe
                break
    else:
        good, bad = 0, k
        if k > 1:
            # shrink fast, then bisect
            probe = k // 2
            while probe >= 1 and not accepts(sequence[:probe]):
                bad = probe
                probe //= 2
            good = probe
    while bad - good > 1:
        mid = (good + bad) // 2
        if accepts(sequence[:mid]):
            good = mid
        else:
            bad = mid
    return good


def greedy_bins(judge: ShareJudge, max_bins: int | None = None) -> list[list[int]] | None:
    """Each GPU takes the next adapters in `fill_order`, as many as the rule accepts; with
    `max_bins`, None as soon as it needs more (the rest is not placed)."""
    remaining = fill_order(judge.adapters)
    bins: list[list[int]] = []
    hint = 1
    while remaining:
        if max_bins is not None and len(bins) == max_bins:
            return None
        rest = _siblings_last(remaining, judge.adapters)
        # the whole rest is tried first on the first GPU only (a whole list accepted is one GPU);
        # on later GPUs it is a large share that rarely fits
        k = largest_prefix(rest, judge.ok, hint, whole_first=not bins)
        if k == 0:
            a = judge.adapters[rest[0]]
            raise InputError(f"adapter {a.id!r} does not fit on one GPU under the {judge.check.name} check")
        bins.append(rest[:k])
        if rest is remaining:
            remaining = remaining[k:]
        else:  # the replicas left over keep their places in the order
            taken = set(rest[:k])
            remaining = [i for i in remaining if i not in taken]
        hint = k
    return bins


def _siblings_last(sequence: list[int], adapters: Sequence[AdapterSpec]) -> list[int]:
    """`sequence` with every replica after the first of its adapter moved to the end, in order: a
    GPU takes one replica of an adapter and fills on with the others (no GPU holds two)."""
    seen: set[str] = set()
    first, later = [], []
    for i in sequence:
        name = adapters[i].id
        (later if name in seen else first).append(i)
        seen.add(name)
    return first + later if later else sequence
