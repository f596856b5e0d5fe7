"""Spreading the greedy's adapters over more GPUs than it needs (`place --gpus N`): fill each GPU
as if every rate were higher, with the largest scale that still fits on N GPUs, then even out
the strain between GPUs (`balance`)."""

from __future__ import annotations

import math

from loratwin.errors import InputError
from loratwin.grammar import plural
from loratwin.plan.placement.balance import even_out
from loratwin.plan.placement.fill import greedy_bins
from loratwin.plan.placement.shares import ShareJudge

# How far the greedy may inflate rates to spread adapters over more GPUs than it needs.
SPREAD_MAX_SCALE = 16.0
# ... found to within this factor: a margin of a few percent is all the spread is for
SPREAD_TOLERANCE = 1.05
# ... searched from an estimate, upward by at least this factor until a fill no longer fits
SPREAD_STEP = 1.1
# moves evening out the spread GPUs may make, per GPU (each pairs the most and least strained)
EVEN_MOVES_PER_GPU = 3


def spread_evenly(judge: ShareJudge, gpus: int, bins: list[list[int]], notes: list[str]) -> list[list[int]]:
    """The greedy's adapters over `gpus` GPUs with the load spread and evened out, also when the
    greedy needs exactly that many: it fills each GPU to its limit in turn and leaves the last one
    the rest."""
    spread, scale = _spread_greedy(judge, gpus, bins)
    if scale > 1.0:
        bins = spread
    filled = len(bins)
    # a load that fits on fewer GPUs even at SPREAD_MAX_SCALE times its rates: the GPUs left empty
    # are evened out too, so that the load is spread over all of them where adapters can move
    bins = [*bins, *([] for _ in range(gpus - len(bins)))]
    bins, moves = even_out(judge, bins, EVEN_MOVES_PER_GPU * len(bins))
    used = sum(1 for b in bins if b)
    if scale > 1.0 and filled > 1:
        notes.append(f"spread over {plural(filled, 'GPU')} (fills each as if rates were x{scale:.2f})")
    if filled < gpus:
        notes.append(f"the load fits on {plural(filled, 'GPU')} even at x{SPREAD_MAX_SCALE:g} the rates")
    if moves:
        notes.append(f"evened out over {plural(used, 'GPU')}: {plural(moves, 'move')} of adapters from the most "
                     f"to the least strained GPU")
    return bins


def _spread_greedy(judge: ShareJudge, gpus: int, bins: list[list[int]]) -> tuple[list[list[int]], float]:
    """Fill GPUs as if every rate were `scale` times higher, with the largest scale that still fits
    on `gpus` GPUs (to within SPREAD_TOLERANCE): the same greedy, with headroom left on every GPU."""

    def fill(scale: float) -> list[list[int]] | None:
        try:
            return greedy_bins(judge.scaled(scale), max_bins=gpus)
        except InputError:  # some adapter alone no longer fits
            return None

    lo, best = 1.0, bins
    hi: float | None = None  # the least scale found not to fit
    # the GPUs needed grow about in proportion to the scale: start where they would just fill `gpus`
    probe = min(SPREAD_MAX_SCALE, max(SPREAD_TOLERANCE, gpus / _gpus_filled(bins, judge)))
    while (hi / lo > SPREAD_TOLERANCE) if hi is not None else lo < SPREAD_MAX_SCALE:
        trial = fill(probe)
        if trial is not None:
            lo, best = probe, trial
        else:
            hi = probe
        if hi is not None:
            probe = math.sqrt(lo * hi)
        else:  # every fill fitted so far: estimate again from the last one, at least a step up
            probe = min(SPREAD_MAX_SCALE, lo * max(SPREAD_STEP, gpus / _gpus_filled(best, judge)))
    return best, lo


def _gpus_filled(bins: list[list[int]], judge: ShareJudge) -> float:
    """The greedy's GPUs counted by load: every GPU but the last is full, the last counts by its
    request rate over the others' mean."""
    loads = [sum(judge.adapters[i].rate_req_s for i in b) for b in bins]
    if len(loads) < 2:
        return 1.0
    full = sum(loads[:-1]) / (len(loads) - 1)
    return len(loads) - 1 + (min(1.0, loads[-1] / full) if full > 0 else 1.0)
