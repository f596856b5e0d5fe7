"""The cost-model check's mean wait for a place in the batch, compiled.

For each max_loras column, W solves sum_a count_a u_a(W) = S, where an adapter of rate λ holds a
place for a share u = B / (1/λ + W + B) of the time and its busy period B = B1 + T e(λT, λW) grows
with the requests that arrived during the wait (`loratwin.plan.busy_periods`). u falls as W
grows, so a bracket that grows by 8x until u(hi) <= S, then safeguarded Newton inside it, finds W.
This is the hot loop of every placement: compiled, each column stops on its own and no temporary
arrays are made.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _extra(flat, mu_grid, inverse_width, columns, offset, up, mu):
    """e(ρ, μ) and its slope in μ, interpolated bilinearly in the flat table (row offset and
    weight toward the next row precomputed for ρ; μ clamped to the grid as np.interp does)."""
    col = np.searchsorted(mu_grid, mu, side="right") - 1
    if col < 0:
        col, frac = 0, 0.0
    elif col > columns - 2:
        col, frac = columns - 2, 1.0
    else:
        frac = (mu - mu_grid[col]) / (mu_grid[col + 1] - mu_grid[col])
    at = offset + col
    left = flat[at] + up * (flat[at + columns] - flat[at])
    right = flat[at + 1] + up * (flat[at + columns + 1] - flat[at + 1])
    step = right - left
    return left + frac * step, step * inverse_width[col]


@njit(cache=True)
def _held_and_slope(values, counts, single, run_s, c, wait, has_table, flat, mu_grid, inverse_width, columns,
                    offsets, ups):
    """Places held (sum of count x u) at wait W in column c, and its derivative in W."""
    held = 0.0
    slope = 0.0
    for v in range(values.shape[0]):
        lam = values[v]
        idle = 1.0 / lam
        extra, d_extra = 0.0, 0.0
        if has_table:
            extra, d_extra = _extra(flat, mu_grid, inverse_width, columns, offsets[v, c], ups[v, c], lam * wait)
        b = single[v, c] + run_s[c] * extra
        db = lam * run_s[c] * d_extra
        cycle = idle + wait + b
        share = b / cycle
        held += counts[v] * share
        slope += counts[v] * ((db * (idle + wait) / cycle - share) / cycle)
    return held, slope


@njit(cache=True, nogil=True)
def solve_waits(values, counts, single, run_s, slots, wait_start, max_wait, has_table, flat, mu_grid,
                inverse_width, columns, offsets, ups):
    """W per column (see the module doc); `wait_start` is the previous iterate (a warm start)."""
    n_cols = slots.shape[0]
    waits = np.zeros(n_cols)
    for c in range(n_cols):
        s = slots[c]
        start = wait_start[c]
        if not np.isfinite(start):
            start = 0.0
        lo = 0.0
        hi = max(1.0, 2.0 * start)
        for _ in range(64):
            held, _slope = _held_and_slope(values, counts, single, run_s, c, hi, has_table, flat, mu_grid,
                                           inverse_width, columns, offsets, ups)
            if held > s and hi < max_wait:
                lo = hi
                hi = min(8.0 * hi, max_wait)
            else:
                break
        wait = start if lo < start < hi else (lo + hi) / 2
        for _ in range(100):
            held, slope = _held_and_slope(values, counts, single, run_s, c, wait, has_table, flat, mu_grid,
                                          inverse_width, columns, offsets, ups)
            excess = held - s
            if abs(excess) <= 1e-5 * s or hi - lo <= 1e-9 * (1 + hi):
                break
            if excess > 0:
                lo = wait
            else:
                hi = wait
            step = wait - excess / slope if slope != 0 else np.nan
            wait = step if lo < step < hi else (lo + hi) / 2
        waits[c] = wait
    return waits
