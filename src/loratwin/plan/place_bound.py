"""A lower bound on the GPUs of any placement the cost-model check accepts.

Every GPU runs in one class: a max_lora_rank r, a max_loras S, a band [Λ_lo, Λ_hi] of total
request rate, and a regime: free (a place in the batch for every busy adapter) or saturated (the
places always full, requests waiting for one). Each class gives three necessary conditions, each a
sum over the GPU's adapters of a cost that is at most 1:

- time: the step-time equation divided by the step time τ. Per-request work is linear in the
  rate λ; the fixed per-step work is spread over at most N_cap(S, r) running requests (Little's law:
  1/τ >= Λ (O+1) / N_cap); LoRA work is per busy adapter when free (at least λ (O+1) g(λ T_hi),
  g(x) = (1 - e^-x)/x, T_hi the longest stay in the class) and S per step when saturated.
- places: when saturated, an adapter holds a place for a share B / (1/λ + W_max + B) of the time
  (B its busy period at the shortest stay the class allows, started by the requests that arrived
  during a wait W_max, the longest accepted), and the shares add up to S; the share shrinks as the
  wait grows and grows with the stay, so it is least there. When free, the busy adapters
  (1 - e^-λT) fit in S.
- band: the rates add up to at most Λ_hi.

Any mix a·time + b·places + c·band (a + b + c = 1) is at most 1 on every GPU, so the GPU count is
at least the sum over adapters of their cheapest class's mixed cost; the best mix is kept. With
many distinct rates, rates are rounded down to 1% steps first (every cost grows with the rate, so
the bound stays valid).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from loratwin.errors import InputError
from loratwin.profiles import Profile

if TYPE_CHECKING:
    from loratwin.plan.place_checks import CostModelCheck

# total-rate bands (req/s): a GPU in a higher band has longer steps, hence longer busy periods
BAND_EDGES = (0.0, *(0.5 * 1.25**k for k in range(29)))
RATE_ROUNDING = 1.01
# more distinct (rank, rate) pairs than this are rounded (the cost is classes x pairs)
MAX_EXACT_GROUPS = 256


def cost_model_lower_bound(check: CostModelCheck, rates: np.ndarray, need_ranks: np.ndarray, profile: Profile) -> float:
    """Fractional GPU count no placement accepted by `check` can go below (see the module doc).
    `need_ranks` is the max_lora_rank each adapter needs at least."""
    from loratwin.plan.place_checks import kv_tokens_or_none, slot_candidates, supported_ranks

    keep = rates > 0
    if not keep.any():
        return 0.0
    rates, need_ranks = rates[keep], need_ranks[keep]
    groups, counts = np.unique(np.column_stack([need_ranks, rates]), axis=0, return_counts=True)
    if len(groups) > MAX_EXACT_GROUPS:
        step = np.log(RATE_ROUNDING)
        rounded = np.exp(np.floor(np.log(rates) / step) * step)
        groups, counts = np.unique(np.column_stack([need_ranks, rounded]), axis=0, return_counts=True)
    need, lam = groups[:, 0], groups[:, 1]
    counts = counts.astype(np.float64)

    m = check.moments(profile)
    st, so = profile.step_time, profile.scheduler_overhead
    stay = m.output + 1
    budget_cap = check.max_num_batched_tokens * stay / (stay + m.prompt)
    late_limit = check.window_s * check.max_late_share
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for rank in supported_ranks(profile):
        allowed = need <= rank
        if not allowed.any():
            continue
        for s in slot_candidates(profile, rank, 10**9, check.slot_grid):
            tokens = kv_tokens_or_none(profile, s, rank)
            if tokens is None:
                continue
            n_cap = check.util_limit * min(tokens / (m.context + profile.kv.block_size / 2), check.max_num_seqs, budget_cap)
            factor = st.lora_factor_base + min(0.0, st.lora_factor_per_adapter) * s
            fixed = factor * st.base_ms + st.lora_step_ms + st.lora_per_rank_ms * rank + st.lora_per_slot_ms * s
            # a negative scheduler intercept gives back at most this share of a step
            slack = 1.0 + max(0.0, -so.intercept_ms) / max(fixed, 1e-9)
            fixed += max(0.0, so.intercept_ms)
            # ms of step time per (req/s): running requests (Little's law) and prefill tokens
            kappa = ((factor * (st.per_seq_ms + st.per_context_token_ms * m.context) + so.per_running_ms
                      + st.lora_per_seq_per_slot_ms * s) * stay + factor * st.per_prefill_token_ms * m.prompt) / 1000
            spread = stay / (1000 * n_cap)  # 1/τ >= Λ (O+1) / N_cap
            step_cap = float(check.step_ms(np.array([n_cap]), np.array([n_cap * m.prompt / stay]), np.array([float(s)]),
                                            np.array([float(s)]), rank, profile, m)[0])
            tau_cap = step_cap / (1 - check.max_load_share)
            for lo, hi in zip(BAND_EDGES, (*BAND_EDGES[1:], np.inf)):
                if kappa * lo >= 1:
                    break
                band = lam / hi
                # free: LoRA work per busy adapter, at the longest stay the band allows
                tau_hi = tau_cap if lo == 0 else min(tau_cap, 1000 * n_cap / (lo * stay))
                x = lam * stay * tau_hi / 1000
                g = np.where(x > 1e-12, -np.expm1(-x) / np.maximum(x, 1e-12), 1.0)
                time_free = lam * (kappa + fixed * spread + st.lora_per_adapter_ms * stay / 1000 * g) / slack
                t_lo = stay * fixed / (1 - kappa * lo) / 1000
                places_free = -np.expm1(-lam * t_lo) / s
                rows.append(_masked(allowed, time_free, places_free, band))
                # saturated: s adapters in every step, and a wait of at most W_max for a place
                tau_lo = (fixed + st.lora_per_adapter_ms * s) / (1 - kappa * lo)
                t_lo = stay * tau_lo / 1000
                w_max = late_limit - t_lo
                if check.max_wait_s is not None:
                    w_max = min(w_max, check.max_wait_s)
                if w_max < 0 or s >= len(rates):
                    continue
                time_sat = lam * (kappa + (fixed + st.lora_per_adapter_ms * s) * spread) / slack
                rho = np.minimum(lam * t_lo, 700.0)
                busy_period = np.expm1(rho) / lam + t_lo * m.batch_extra(m.locate(rho), lam * w_max)[0]
                places_sat = busy_period / (1 / lam + w_max + busy_period) / s
                rows.append(_masked(allowed, time_sat, places_sat, band))
    if not rows:
        raise InputError(f"no max_loras value starts for profile {profile.name}")
    time_cost = np.vstack([r[0] for r in rows])
    place_cost = np.vstack([r[1] for r in rows])
    band_cost = np.vstack([r[2] for r in rows])
    return _best_mix(time_cost, place_cost, band_cost, counts)


def _masked(allowed: np.ndarray, *costs: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.where(allowed, c, np.inf) for c in costs)


def _best_mix(time_cost: np.ndarray, place_cost: np.ndarray, band_cost: np.ndarray, counts: np.ndarray) -> float:
    """max over a + b + c = 1 of sum_i min_class (a time + b places + c band). The function is
    concave in (a, b): a coarse grid over the simplex, then a pattern search with halving steps
    over the classes that were cheapest somewhere on the grid. Any (a, b) gives a valid bound, so
    the search may cut corners; the value returned is computed over every class."""
    finite = np.isfinite(time_cost)
    costs = [np.where(finite, c, 0.0).astype(np.float32) for c in (time_cost, place_cost, band_cost)]
    banned = np.where(finite, 0.0, np.inf).astype(np.float32)
    weights = counts.astype(np.float64)

    def mixed(a: float, b: float, rows: np.ndarray | slice) -> np.ndarray:
        return a * costs[0][rows] + b * costs[1][rows] + (1.0 - a - b) * costs[2][rows] + banned[rows]

    def inside(a: float, b: float) -> bool:
        return a >= -1e-12 and b >= -1e-12 and a + b <= 1 + 1e-12

    coarse = [(a, b) for a in np.linspace(0, 1, 5) for b in np.linspace(0, 1, 5) if inside(a, b)]
    cheapest: set[int] = set()
    best, a, b = -np.inf, 1.0, 0.0
    for pa, pb in coarse:
        m = mixed(pa, pb, slice(None))
        cheapest.update(np.unique(m.argmin(axis=0)).tolist())
        v = float(weights @ m.min(axis=0))
        if v > best:
            best, a, b = v, pa, pb
    for _ in range(4):
        rows = np.array(sorted(cheapest))
        a, b = _pattern_search(lambda pa, pb: float(weights @ mixed(pa, pb, rows).min(axis=0)), a, b, inside)
        # classes cheapest at the point found but left out of the search: search again with them
        found = set(np.unique(mixed(a, b, slice(None)).argmin(axis=0)).tolist())
        if found <= cheapest:
            break
        cheapest |= found
    # the bound itself: every class, in float64
    with np.errstate(invalid="ignore"):  # 0 x inf where a class is not allowed: masked next
        full = a * time_cost + b * place_cost + (1.0 - a - b) * band_cost
    return float(weights @ np.where(finite, full, np.inf).min(axis=0))


def _pattern_search(value, a: float, b: float, inside) -> tuple[float, float]:
    """Hill-climb a concave function of (a, b) from (a, b) with halving steps."""
    best = value(a, b)
    step = 0.125
    while step > 1 / 512:
        for da, db in ((step, 0), (-step, 0), (0, step), (0, -step), (step, -step), (-step, step)):
            na, nb = a + da, b + db
            if inside(na, nb):
                na, nb = max(na, 0.0), max(nb, 0.0)
                v = value(na, nb)
                if v > best:
                    best, a, b = v, na, nb
                    break
        else:
            step /= 2
    return a, b
