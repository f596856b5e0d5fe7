"""Even out a placement on a fixed number of GPUs.

Spreading over N GPUs fills each one in turn as if the rates were higher, so every GPU keeps some
room, except that the last one still takes whatever is left: often a fraction of the others' load.
`even_out` then moves adapters from the most strained GPU to the least strained one, as many as
bring the two closest (the check's strain, bisected over how many of the busier GPU's last-placed
adapters move), while that lowers the higher of the two. Every GPU it returns is accepted when
every GPU it was given was: a move only ever lowers the highest strain of the pair."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loratwin.plan.judge import GpuVerdict

# GPUs whose strains are this close count as even
EVEN_GAP = 0.05
# a move must lower the pair's higher strain by at least this much
MIN_GAIN = 0.005


def even_out(judge: Callable[[Sequence[int]], GpuVerdict], bins: list[list[int]],
             max_moves: int) -> tuple[list[list[int]], int]:
    """The bins with load moved from the most to the least strained GPU, pair by pair, within
    `max_moves` moves; returns them and the moves made."""
    bins = [list(b) for b in bins]
    strain = [judge(b).strain if b else 0.0 for b in bins]  # an empty GPU (place --gpus N) bears nothing
    for move in range(max_moves):
        high = max(range(len(bins)), key=lambda g: (strain[g], -g))
        low = min(range(len(bins)), key=lambda g: (strain[g], g))
        if strain[high] - strain[low] < EVEN_GAP or len(bins[high]) < 2:
            return bins, move
        k, left, right = _closest_split(judge, bins[high], bins[low])
        if max(left, right) > strain[high] - MIN_GAIN:
            return bins, move
        moved = bins[high][-k:]
        bins[high] = bins[high][:-k]
        bins[low] = bins[low] + moved
        strain[high], strain[low] = left, right
    return bins, max_moves


def _closest_split(judge, giver: list[int], taker: list[int]) -> tuple[int, float, float]:
    """How many of `giver`'s last adapters to move to `taker` so that the higher of the two
    strains after the move is least (giver's falls and taker's rises with the count), and the
    two strains then."""

    def after(k: int) -> tuple[float, float]:
        return judge(giver[:-k]).strain, judge(taker + giver[-k:]).strain

    lo, hi = 1, len(giver) - 1  # at least one adapter moves, at least one stays
    while lo < hi:  # the least k at which the taker is at least as strained as the giver
        mid = (lo + hi) // 2
        left, right = after(mid)
        if right >= left:
            hi = mid
        else:
            lo = mid + 1
    best = min((k for k in (lo - 1, lo) if k >= 1), key=lambda k: (max(after(k)), k))
    return (best, *after(best))
