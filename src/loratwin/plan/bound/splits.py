"""The lower bound with adapters split over GPUs (replicas, `loratwin.plan.placement.replicas`).

A placement may serve an adapter of rate λ from several GPUs, each with a piece λ_i (Σ λ_i = λ,
at most one piece per GPU). In the relaxation each piece is an adapter of its own, so the bound
holds for split placements when, per class, every cost c(λ) has c(λ)/λ nonincreasing: then the
dual price h(λ) = min_k (v_k · c_k(λ) - w_k λ) has h(λ)/λ nonincreasing too, and
Σ h(λ_i) = Σ λ_i h(λ_i)/λ_i >= Σ λ_i h(λ)/λ = h(λ): the pieces cost at least the whole.

Every cost of `cost_model` has that shape (linear, or concave through 0, or a constant per
adapter) except the saturated classes' places, f(λ) = B / (1/λ + W + B) / S with B the busy
period, which grows about exponentially with λT and is S-shaped in λ: two halves of a busy
adapter hold fewer places than the whole. `split_places` replaces it by the largest function
below it whose ratio to λ is nonincreasing, λ · inf over μ <= λ of f(μ)/μ, bounded from below on
a geometric grid of μ (the busy period B is nondecreasing in μ: the busy-period table is checked
to be nondecreasing in both its coordinates, else its extra term is left out). The result is
continuous and nondecreasing in λ, so rounding rates down keeps the bound valid as before.
"""

from __future__ import annotations

import numpy as np

# ratio between grid points of the piece rates μ: the bound loses at most about this share where
# the places are S-shaped
GRID_STEP = 1.02


def split_places(t_lo: np.ndarray, w_max: np.ndarray, lam: np.ndarray, slots: int, moments) -> np.ndarray:
    """Per band (rows: shortest stay `t_lo`, longest wait `w_max`) and group rate λ (columns): a
    places cost at most the saturated one, whose ratio to λ is nonincreasing (module doc)."""
    mu = np.exp(np.arange(np.log(lam.min() / 2), np.log(lam.max()) + np.log(GRID_STEP), np.log(GRID_STEP)))
    busy = np.maximum.accumulate(_busy_period(t_lo, w_max, mu, moments), axis=1)
    # on [μ_j, μ_j+1]: f(μ)/μ = φ(μ, B(μ)) >= φ(μ_j+1, B(μ_j)), φ(μ, B) = B / (1 + μ (W + B)) falling
    # in μ, rising in B; below μ_0, B >= T (the busy period is at least one stay)
    first = _phi(mu[0], t_lo[:, None], w_max[:, None])
    intervals = _phi(mu[None, 1:], busy[:, :-1], w_max[:, None])
    floor = np.minimum.accumulate(np.hstack([first, intervals]), axis=1)  # [:, k]: every interval below μ_k
    k = np.searchsorted(mu, lam, side="right") - 1  # μ_k <= λ < μ_k+1
    partial = _phi(lam[None, :], busy[:, k], w_max[:, None])
    return lam[None, :] * np.minimum(floor[:, k], partial) / slots


def _phi(mu, busy, wait):
    return busy / (1 + mu * (wait + busy))


def _busy_period(t_lo: np.ndarray, w_max: np.ndarray, mu: np.ndarray, moments) -> np.ndarray:
    """The busy period at piece rate μ (band x grid), as the saturated places price it."""
    rho = np.minimum(np.outer(t_lo, mu), 700.0)
    busy = np.expm1(rho) / mu
    if _monotone_busy_table(moments):
        busy = busy + t_lo[:, None] * moments.batch_extra(moments.locate(rho), np.outer(w_max, mu))[0]
    return busy


def _monotone_busy_table(moments) -> bool:
    table = getattr(moments.busy_periods, "table", None)
    return table is not None and bool((np.diff(table, axis=0) >= 0).all() and (np.diff(table, axis=1) >= 0).all())
