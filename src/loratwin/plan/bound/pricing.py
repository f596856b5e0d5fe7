"""The lower bound's pricing loops, compiled (see `loratwin.plan.bound.cost_model`).

Every class k has three costs per adapter group g (time, places, band; time is inf where the class
cannot take the group). The bound prices each group at its cheapest class under per-class
weights, and the column generation prices thousands of classes under a grid of weight mixes.
In numpy each of these would make a (mix x class x group) temporary of a hundred megabytes for
one reduction; here each is one pass over the costs, without the GIL (the bound runs in a thread
beside the placement). A weight of 0 ignores its cost, whatever that cost is.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def cheapest_priced(time, places, band, weights, low_weights, rates, rows):
    """Per group: the least v_k · cost_kg - w_k λ_g over the classes `rows` (inf where none
    takes the group); `weights` (v_k, 3 per class) and `low_weights` (w_k) are indexed by class."""
    n_groups = time.shape[1]
    out = np.full(n_groups, np.inf)
    for k in rows:
        v0, v1, v2, w = weights[k, 0], weights[k, 1], weights[k, 2], low_weights[k]
        for g in range(n_groups):
            t = time[k, g]
            if not np.isfinite(t):
                continue
            price = -w * rates[g]
            if v0 != 0.0:
                price += v0 * t
            if v1 != 0.0:
                price += v1 * places[k, g]
            if v2 != 0.0:
                price += v2 * band[k, g]
            if price < out[g]:
                out[g] = price
    return out


@njit(cache=True, nogil=True)
def cheapest_mixed(time, places, band, mixes):
    """Per mix and group: the least mix · cost_kg over every class, and the first class that
    reaches it (class 0 where no class takes the group)."""
    n_classes, n_groups = time.shape
    n_mixes = mixes.shape[0]
    best = np.full((n_mixes, n_groups), np.inf)
    where = np.zeros((n_mixes, n_groups), np.int64)
    for k in range(n_classes):
        for g in range(n_groups):
            t = time[k, g]
            if not np.isfinite(t):
                continue
            p, b = places[k, g], band[k, g]
            for m in range(n_mixes):
                value = _mixed(mixes, m, t, p, b)
                if value < best[m, g]:
                    best[m, g] = value
                    where[m, g] = k
    return best, where


@njit(cache=True, nogil=True)
def mix_shortfalls(time, places, band, mixes, duals, counts, rows):
    """Per mix and class of `rows`: sum over groups of count_g · min(0, mix · cost_kg - dual_g),
    how far the class priced at that mix undercuts the groups' duals."""
    n_groups = time.shape[1]
    out = np.zeros((mixes.shape[0], len(rows)))
    for r in range(len(rows)):
        k = rows[r]
        for g in range(n_groups):
            t = time[k, g]
            if not np.isfinite(t):
                continue
            p, b = places[k, g], band[k, g]
            for m in range(mixes.shape[0]):
                gap = _mixed(mixes, m, t, p, b) - duals[g]
                if gap < 0.0:
                    out[m, r] += counts[g] * gap
    return out


@njit(cache=True, inline="always")
def _mixed(mixes, m, t, p, b):
    value = 0.0
    if mixes[m, 0] != 0.0:
        value += mixes[m, 0] * t
    if mixes[m, 1] != 0.0:
        value += mixes[m, 1] * p
    if mixes[m, 2] != 0.0:
        value += mixes[m, 2] * b
    return value
