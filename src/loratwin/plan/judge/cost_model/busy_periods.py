"""How long an adapter holds its place in the batch once it gets one.

An adapter's requests arrive as a Poisson process at rate λ and each runs for a random time (its
output length in steps, times the step time), so while it holds a place its requests form an
M/G/inf queue. When it had to wait W for the place, it starts with 1 + Poisson(λW) requests at once.
For an M/G/inf queue started with K customers the mean busy period is exact:

    E[B] = e^ρ ∫ P(one of the K still runs at t) e^(-λ m(t)) dt,    m(t) = ∫_0^t (1 - G(u)) du,

with G the run-time distribution and ρ = λ T (T its mean). With K = 1 + Poisson(μ),
P(one still runs at t) = 1 - G(t) e^(-μ (1 - G(t))); with μ = 0 it gives (e^ρ - 1) / λ, the
one-request busy period. `BatchStartBusyPeriods` tabulates the part that the waiting requests add,
in units of T, over ρ and μ = λW, from the empirical run-length distribution, and interpolates.
"""

from __future__ import annotations

import numpy as np

# μ = λW: expected requests that arrived during the wait (log-spaced, and 0)
MU_GRID = np.concatenate([[0.0], np.logspace(-4, 4, 161)])
# ρ = λT: beyond RHO_MAX an adapter holds its place nearly always and the one-request busy period
# (exact, computed apart) dominates; the table stops there
RHO_MAX = 12.0
RHO_GRID = np.linspace(0.0, RHO_MAX, 121)


def _intervals(run_lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """The empirical distribution of run lengths (scaled to mean 1) as intervals of constant G:
    start, width, G on the interval, and m at its start."""
    x = np.sort(np.asarray(run_lengths, np.float64))
    x = x / x.mean()
    values, counts = np.unique(x, return_counts=True)
    cdf = np.cumsum(counts) / counts.sum()
    starts = np.concatenate([[0.0], values[:-1]])
    widths = values - starts
    below = np.concatenate([[0.0], cdf[:-1]])  # G on [start, next value)
    m_start = np.concatenate([[0.0], np.cumsum((1 - below) * widths)[:-1]])
    return starts, widths, below, m_start


def batch_extra(run_lengths: np.ndarray, rho: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """(E[B | start with 1 + Poisson(μ)] - E[B | start with 1]) / T for every ρ (rows) and μ
    (columns), exact for the empirical run-length distribution."""
    _, widths, g, m_start = _intervals(run_lengths)
    survive = 1.0 - g  # > 0 on every interval: G reaches 1 only after the last value
    rho = np.asarray(rho, np.float64)[:, None]
    # e^ρ ∫ over each interval of e^(-ρ m(t)) dt, m linear there with slope 1 - G
    rate = rho * survive[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        piece = np.where(rate > 0, -np.expm1(-rate * widths[None, :]) / rate, widths[None, :])
    weight = np.exp(rho * (1.0 - m_start[None, :])) * piece
    # what the waiting requests add to P(one still runs at t): G (1 - e^(-μ (1 - G)))
    added = g[:, None] * -np.expm1(-np.asarray(mu, np.float64)[None, :] * survive[:, None])
    return weight @ added


class BatchStartBusyPeriods:
    """The table of `batch_extra` over RHO_GRID x MU_GRID, interpolated bilinearly (the hot path
    of the cost-model check: flat lookups, no temporary 2-D indexing)."""

    def __init__(self, run_lengths: np.ndarray) -> None:
        table = np.maximum.accumulate(np.maximum(batch_extra(run_lengths, RHO_GRID, MU_GRID), 0.0), axis=1)
        # one more column far out, equal to the last: beyond the grid the value holds, the slope is 0
        self._mu = np.append(MU_GRID, MU_GRID[-1] * 1e6)
        self.table = np.hstack([table, table[:, -1:]])
        self._flat = self.table.ravel()
        self._columns = self.table.shape[1]
        self._index = np.arange(len(self._mu), dtype=np.float64)
        self._inverse_width = 1.0 / np.diff(self._mu)

    def lookup_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The flat table, the μ grid, its inverse widths and the row length, for compiled lookups
        (`loratwin.plan.wait_solver`)."""
        return self._flat, self._mu, self._inverse_width, self._columns

    def locate(self, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offset of each ρ's row in the flat table and its weight toward the next row (ρ clamped
        to the table), reused while only μ changes."""
        position = np.interp(rho, RHO_GRID, np.arange(len(RHO_GRID), dtype=np.float64))
        row = np.minimum(position.astype(np.int64), len(RHO_GRID) - 2)
        return row * self._columns, position - row

    def extra(self, located: tuple[np.ndarray, np.ndarray], mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The added busy period / T at (ρ, μ), and its derivative in μ."""
        offset, up = located
        position = np.interp(mu, self._mu, self._index)
        col = np.minimum(position.astype(np.int64), self._columns - 2)
        at = offset + col
        flat = self._flat
        low0, low1 = flat.take(at), flat.take(at + 1)
        high0, high1 = flat.take(at + self._columns), flat.take(at + self._columns + 1)
        left = low0 + up * (high0 - low0)
        right = low1 + up * (high1 - low1)
        step = right - left
        return left + (position - col) * step, step * self._inverse_width.take(col)
