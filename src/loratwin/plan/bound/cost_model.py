"""A lower bound on the GPUs of any placement the cost-model check accepts.

Every GPU runs in one class: a max_lora_rank r, a max_loras S, a band [Λ_lo, Λ_hi] of total
request rate, and a regime: free (a place in the batch for every busy adapter, with A busy
adapters on average in a band (A_lo, A_hi], A <= S) or saturated (the places always full, requests
waiting for one, A = S). S is one of the check's candidates, or the GPU's adapter count (every
adapter resident), which may fall between two candidates: a resident class covers the counts
between each pair, with every per-step term at its cheapest over them and one place per adapter. Each class gives three necessary conditions, each a
sum over the GPU's adapters of a cost that is at most 1:

- time: the step-time equation divided by the step time τ. Per-request work is linear in the
  rate λ; the fixed per-step work is spread over at most N_cap(S, r) running requests (Little's law:
  1/τ >= Λ (O+1) / N_cap); LoRA work is per busy adapter when free (at least λ (O+1) g(λ T_hi),
  g(x) = (1 - e^-x)/x, T_hi the longest stay in the class) and S per step when saturated.
- places: when saturated, an adapter holds a place for a share B / (1/λ + W_max + B) of the time
  (B its busy period at the shortest stay the class allows, started by the requests that arrived
  during a wait W_max, the longest accepted), and the shares add up to S; the share shrinks as the
  wait grows and grows with the stay, so it is least there. When free, the busy adapters
  (1 - e^-λT each) add up to A <= A_hi, with T at least the stay of a step that carries the LoRA
  work of A_lo busy adapters (0.5 ms each on an 8B model: a GPU with a hundred busy adapters has
  steps several times longer than one with a few, and every adapter stays busy longer).
- band: the rates add up to at most Λ_hi.

The bound is the linear relaxation of choosing GPUs by class: y_k GPUs of class k take x_kg
adapters of group g (same rank need and rate), with sum_g x_kg cost_kg <= y_k for each condition,
sum_g x_kg λ_g >= Λ_lo y_k (a GPU of the band carries at least its lower edge), and every adapter
placed; minimise sum_k y_k. Its value is read from the dual: any per-class weights v_k >= 0 (one
per condition) and w_k >= 0 with sum v_k <= 1 + Λ_lo w_k give

    GPUs >= sum over adapters of min_k (v_k · cost_k - w_k λ),

so whatever weights are found, the bound holds. They come from column generation on the
relaxation: a master LP over a few classes (scipy's HiGHS), whose duals weight those classes, and
a grid of weights for the rest; a class whose best grid weight still undercuts an adapter's dual
joins the master. The master runs on rates rounded down to coarse steps (fewer groups, a faster
LP); the bound itself is summed over the fine groups. A single mix a·time + b·places + c·band for
every class (the weights shared by all classes, w = 0) is the special case kept as a floor.

With many distinct rates, rates are rounded down to 1% steps first (every cost grows with the
rate, so the bound stays valid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loratwin.errors import InputError
from loratwin.plan.bound.pricing import cheapest_mixed, cheapest_priced, mix_shortfalls
from loratwin.plan.bound.splits import split_places
from loratwin.plan.judge.cost_model import CostModelCheck
from loratwin.plan.judge.slots import class_ranks, kv_tokens_or_none, slot_candidates
from loratwin.profiles import Profile

# total-rate bands (req/s): a GPU in a higher band has longer steps, hence longer busy periods
BAND_EDGES = (0.0, *(0.5 * 1.25**k for k in range(29)))
BAND_LOW, BAND_HIGH = np.array(BAND_EDGES), np.array([*BAND_EDGES[1:], np.inf])
RATE_ROUNDING = 1.01
# more distinct (rank, rate) pairs than this are rounded (the cost is classes x pairs)
MAX_EXACT_GROUPS = 256
# bands of busy adapters per free-regime class (halving from max_loras)
BUSY_BANDS = 5
# the master LP's groups: the fine ones up to this many, else rates rounded down to 30% steps
# (about 70 groups for 2,000 Zipf adapters)
MASTER_GROUPS = 80
MASTER_ROUNDING = 1.3
MASTER_ROUNDS = 2  # a third round adds about 0.5% to the bound and 50% to its time
MASTER_ADDS = 100  # classes added to the master per round, the most undercutting first
# weights (time, places, band) tried: the coarse grid seeds the master, the fine one prices the rest
SEED_WEIGHTS = np.array([(a, b, 1 - a - b) for a in np.linspace(0, 1, 5) for b in np.linspace(0, 1, 5) if a + b <= 1 + 1e-9])
PRICE_WEIGHTS = np.array([(a, b, 1 - a - b) for a in np.linspace(0, 1, 9) for b in np.linspace(0, 1, 9) if a + b <= 1 + 1e-9])


@dataclass(frozen=True)
class ClassCosts:
    """Each class's three costs (class x group; inf where the class cannot take the group) and
    the lower edge of its rate band."""

    time: np.ndarray
    places: np.ndarray
    band: np.ndarray
    low: np.ndarray

    def columns(self, keep: np.ndarray | slice) -> ClassCosts:
        return ClassCosts(self.time[:, keep], self.places[:, keep], self.band[:, keep], self.low)

    def rows(self, keep: np.ndarray) -> ClassCosts:
        return ClassCosts(self.time[keep], self.places[keep], self.band[keep], self.low[keep])

    def cheapest(self, weights: np.ndarray, low_weights: np.ndarray, rates: np.ndarray,
                 rows: np.ndarray | None = None) -> np.ndarray:
        """Per group, the least v_k · cost_kg - w_k λ_g over the classes `rows` (all by
        default); `weights` (class x 3) and `low_weights` are indexed by class."""
        rows = np.arange(len(self.low)) if rows is None else rows
        return cheapest_priced(self.time, self.places, self.band, np.ascontiguousarray(weights, np.float64),
                               np.asarray(low_weights, np.float64), rates, rows)

    def cheapest_mixed(self, mixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per mix (row of `mixes`) and group, the least mix · cost over the classes and the
        class that reaches it: for choosing weights."""
        return cheapest_mixed(self.time, self.places, self.band, mixes)

    def shortfalls(self, mixes: np.ndarray, duals: np.ndarray, counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Per mix and class of `rows`, how far the class at that mix undercuts the groups'
        duals, weighted by the group counts (<= 0)."""
        return mix_shortfalls(self.time, self.places, self.band, mixes, duals, counts, rows)


def cost_model_lower_bound(check: CostModelCheck, rates: np.ndarray, need_ranks: np.ndarray, profile: Profile,
                           splits: bool = True) -> float:
    """Fractional GPU count no placement accepted by `check` can go below (see the module doc).
    `need_ranks` is the max_lora_rank each adapter needs at least. With `splits`, also no
    placement that splits adapters over GPUs (replicas, `loratwin.plan.bound.splits`)."""
    keep = rates > 0
    if not keep.any():
        return 0.0
    rates, need_ranks = rates[keep], need_ranks[keep]
    fine_need, fine_rate, fine_count = _groups(need_ranks, rates, None)
    if len(fine_rate) > MAX_EXACT_GROUPS:
        fine_need, fine_rate, fine_count = _groups(need_ranks, rates, RATE_ROUNDING)
    if len(fine_rate) <= MASTER_GROUPS:
        coarse_need, coarse_rate, coarse_count = fine_need, fine_rate, fine_count
    else:
        coarse_need, coarse_rate, coarse_count = _groups(need_ranks, rates, MASTER_ROUNDING)
    # one pass over the classes prices both sets of groups
    costs = _class_costs(check, np.concatenate([fine_need, coarse_need]), np.concatenate([fine_rate, coarse_rate]),
                         len(rates), profile, splits)
    fine = costs.columns(slice(0, len(fine_rate)))
    coarse = costs.columns(slice(len(fine_rate), None))
    seeded, seed_classes = coarse.cheapest_mixed(SEED_WEIGHTS)  # seed mix x group
    weights, low_weights = _class_weights(coarse, coarse_rate, coarse_count, np.unique(seed_classes))
    relaxation = float(fine_count @ fine.cheapest(weights, low_weights, fine_rate))
    # the best seed mix shared by every class: the floor
    mix = best_seed_mix(seeded, coarse_count)
    shared = float(fine_count @ fine.cheapest(np.broadcast_to(mix, weights.shape), np.zeros_like(low_weights), fine_rate))
    return max(relaxation, shared)


def _groups(need: np.ndarray, rates: np.ndarray, rounding: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (rank need, rate) pairs and their counts; rates rounded down to steps of `rounding`."""
    if rounding is not None:
        step = np.log(rounding)
        rates = np.exp(np.floor(np.log(rates) / step) * step)
    groups, counts = np.unique(np.column_stack([need, rates]), axis=0, return_counts=True)
    return groups[:, 0], groups[:, 1], counts.astype(np.float64)


def _class_costs(check: CostModelCheck, need: np.ndarray, lam: np.ndarray, n_adapters: int, profile: Profile,
                 splits: bool = True) -> ClassCosts:
    """The three costs of every group (rank need, rate λ) in every GPU class (module doc); with
    `splits`, costs that let adapters be split (`bound.splits`). A GPU holds at most one piece of
    an adapter, so at most `n_adapters` adapters, split or not."""

    m = check.moments(profile)
    st = profile.step_time
    stay = m.output + 1
    late_limit = check.rule.window_s * check.rule.max_late_share
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = []  # time, places, band, lows, rank
    for rank in class_ranks(profile, need):
        # max_loras is a candidate, or the GPU's adapter count (every adapter resident): the
        # resident classes cover the counts between candidates, (previous, s)
        uppers = slot_candidates(profile, rank, 10**9, check.slot_grid)
        most = profile.kv.max_slots(rank)
        if most and (not uppers or uppers[-1] < most):
            uppers.append(most)
        previous = 0
        for s in uppers:
            between = _slot_terms(check, profile, m, rank, previous + 1, s - 1) if s - 1 > previous else None
            exact = _slot_terms(check, profile, m, rank, s, s)
            previous = s
            if between is not None:
                # resident: at most s - 1 adapters, each with its place
                lo, hi = _bands(between)
                time_free = _time_free(between, lam, lo, stay, st)
                blocks.append((time_free, np.full(time_free.shape, 1.0 / (s - 1)), lam / hi[:, None], lo, rank))
            if exact is None:
                continue
            lo, hi = _bands(exact)
            band = lam / hi[:, None]
            # free: LoRA work per busy adapter, at the longest stay the band allows, and by how
            # many adapters are busy, A in (a_lo, a_hi]: each adds LoRA work to every step, so the
            # stay is longest where A is
            time_free = _time_free(exact, lam, lo, stay, st)
            for a_lo, a_hi in _busy_bands(s):
                lora_busy = min(st.lora_per_adapter_ms * a_lo, st.lora_per_adapter_ms * a_hi)  # either sign
                t_lo = stay * (exact.fixed + lora_busy) / (1 - exact.kappa * lo) / 1000
                blocks.append((time_free, -np.expm1(-np.outer(t_lo, lam)) / a_hi, band, lo, rank))
            # saturated: s adapters in every step, and a wait of at most W_max for a place
            if s >= n_adapters:
                continue
            t_lo = stay * (exact.fixed + st.lora_per_adapter_ms * s) / (1 - exact.kappa * lo) / 1000
            w_max = late_limit - t_lo
            if check.rule.max_wait_s is not None:
                w_max = np.minimum(w_max, check.rule.max_wait_s)
            keep = w_max >= 0
            if not keep.any():
                continue
            t_lo, w_max = t_lo[keep], w_max[keep]
            time_sat = lam * (exact.kappa + (exact.fixed + st.lora_per_adapter_ms * s) * exact.spread) / exact.slack
            rho = np.minimum(np.outer(t_lo, lam), 700.0)
            busy_period = np.expm1(rho) / lam + t_lo[:, None] * m.batch_extra(m.locate(rho), np.outer(w_max, lam))[0]
            places_sat = busy_period / (1 / lam + w_max[:, None] + busy_period) / s
            if splits:
                places_sat = np.minimum(places_sat, split_places(t_lo, w_max, lam, s, m))
            blocks.append((np.broadcast_to(time_sat, places_sat.shape), places_sat, band[keep], lo[keep], rank))
    if not blocks:
        raise InputError(f"no max_loras value starts for profile {profile.name}")
    # a class cannot take an adapter whose rank is above its max_lora_rank
    row_ranks = np.concatenate([np.full(len(b[3]), float(b[4])) for b in blocks])
    barred = need[None, :] > row_ranks[:, None]
    stacked = [np.vstack([b[k] for b in blocks]) for k in range(3)]
    for cost in stacked:
        cost[barred] = np.inf
    return ClassCosts(*stacked, np.concatenate([b[3] for b in blocks]))


@dataclass(frozen=True)
class _SlotTerms:
    """A GPU's per-step terms for any max_loras in [s_lo, s_hi], each at its least (the stay cap
    at its most): the most KV (s_lo), every slot term at the cheaper end."""

    n_cap: float  # running requests at most
    fixed: float  # ms of every step
    slack: float  # share of a step a negative scheduler intercept may give back, plus 1
    kappa: float  # ms of step time per (req/s): running requests (Little's law) and prefill tokens
    spread: float  # 1/τ >= Λ (O+1) / N_cap
    tau_cap: float  # the longest step (ms)


def _slot_terms(check: CostModelCheck, profile: Profile, m, rank: int, s_lo: int, s_hi: int) -> _SlotTerms | None:

    tokens = kv_tokens_or_none(profile, s_lo, rank)  # fewer slots leave more KV
    if tokens is None:
        return None
    st, so = profile.step_time, profile.scheduler_overhead
    stay = m.output + 1
    budget_cap = check.max_num_batched_tokens * stay / (stay + m.prompt)
    n_cap = check.rule.kv_use_limit(profile) * min(tokens / (m.context + profile.kv.block_size / 2), check.max_num_seqs, budget_cap)
    factor = st.lora_factor_base + min(0.0, st.lora_factor_per_adapter) * s_hi
    fixed = (factor * st.base_ms + st.lora_step_ms + st.lora_per_rank_ms * rank
             + min(st.lora_per_slot_ms * s_lo, st.lora_per_slot_ms * s_hi))
    # a negative scheduler intercept gives back at most this share of a step
    slack = 1.0 + max(0.0, -so.intercept_ms) / max(fixed, 1e-9)
    fixed += max(0.0, so.intercept_ms)
    per_seq_slots = min(st.lora_per_seq_per_slot_ms * s_lo, st.lora_per_seq_per_slot_ms * s_hi)
    per_prompt_slots = min(st.lora_per_prefill_token_per_slot_ms * s_lo, st.lora_per_prefill_token_per_slot_ms * s_hi)
    kappa = ((factor * (st.per_seq_ms + st.per_context_token_ms * m.context) + so.per_running_ms + per_seq_slots) * stay
             + (factor * st.per_prefill_token_ms + per_prompt_slots) * m.prompt) / 1000
    # the longest step: the most requests running, every slot in use (each term grows with both)
    step_cap = float(check.step_ms(np.array([n_cap]), np.array([n_cap * m.prompt / stay]), np.array([float(s_hi)]),
                                   np.array([float(s_hi)]), rank, profile, m)[0])
    return _SlotTerms(n_cap, fixed, slack, kappa, stay / (1000 * n_cap), step_cap / (1 - check.rule.max_load_share))


def _bands(terms: _SlotTerms) -> tuple[np.ndarray, np.ndarray]:
    """The total-rate bands [lo, hi) a GPU with these terms can run in (its steps stay finite)."""
    keep = terms.kappa * BAND_LOW < 1
    return BAND_LOW[keep], BAND_HIGH[keep]


def _time_free(terms: _SlotTerms, lam: np.ndarray, lo: np.ndarray, stay: float, st) -> np.ndarray:
    """The time cost with free places (band x group): LoRA work per busy adapter, at the longest
    stay each band allows."""
    with np.errstate(divide="ignore"):
        tau_hi = np.where(lo == 0, terms.tau_cap, np.minimum(terms.tau_cap, 1000 * terms.n_cap / (lo * stay)))
    x = np.outer(tau_hi, lam) * stay / 1000
    g = np.where(x > 1e-12, -np.expm1(-x) / np.maximum(x, 1e-12), 1.0)
    return lam * (terms.kappa + terms.fixed * terms.spread + st.lora_per_adapter_ms * stay / 1000 * g) / terms.slack


def _busy_bands(slots: int) -> list[tuple[float, float]]:
    """Bands of the busy adapters A on a GPU with free places (A <= max_loras): halving from
    max_loras down, the last one from 0."""
    bands, high = [], float(slots)
    for _ in range(BUSY_BANDS - 1):
        if high < 2:
            break
        bands.append((high / 2, high))
        high /= 2
    bands.append((0.0, high))
    return bands


def best_seed_mix(seeded: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The seed mix that, shared by every class (w = 0), bounds best (`seeded`: the first of
    `cheapest_mixed(SEED_WEIGHTS)`)."""
    return SEED_WEIGHTS[int(np.argmax(seeded @ counts))]


def _class_weights(costs: ClassCosts, rates: np.ndarray, counts: np.ndarray,
                   first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class dual weights (v_k, w_k) by column generation on the relaxation (module doc),
    starting from the classes `first` (by default each group's cheapest under each seed mix)."""
    n_classes = len(costs.low)
    if first is None:
        first = np.unique(costs.cheapest_mixed(SEED_WEIGHTS)[1])
    master: set[int] = set(first.tolist())
    weights, low_weights = np.zeros((n_classes, 3)), np.zeros(n_classes)
    for _ in range(MASTER_ROUNDS):
        inside = np.array(sorted(master))
        solved = _master_duals(costs.rows(inside), rates, counts)
        if solved is None:  # keep the last weights (all 0 at first: the shared mix stands alone)
            break
        weights[:], low_weights[:] = 0.0, 0.0
        weights[inside], low_weights[inside] = solved
        duals = costs.cheapest(weights, low_weights, rates, inside)
        outside = np.setdiff1d(np.arange(n_classes), inside)
        if not len(outside):
            break
        # price each outside class at its best grid weight: the one that undercuts the duals least
        shortfall_by_mix = costs.shortfalls(PRICE_WEIGHTS, duals, counts, outside)  # grid x class
        best = shortfall_by_mix.argmax(axis=0)
        shortfall = shortfall_by_mix[best, np.arange(len(outside))]
        weights[outside] = PRICE_WEIGHTS[best]
        undercut = shortfall < -1e-9 * counts.sum()
        if not undercut.any():
            break
        master.update(outside[undercut][np.argsort(shortfall[undercut], kind="stable")[:MASTER_ADDS]].tolist())
    return weights, low_weights


def _master_duals(costs: ClassCosts, rates: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Solve the relaxation over these classes; return their dual weights (v_k, w_k), scaled so
    that sum v_k <= 1 + Λ_lo w_k holds exactly (HiGHS meets it only to a tolerance); None when
    the solver gives no solution."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    n_classes, n_groups = costs.time.shape
    cls, grp = np.nonzero(np.isfinite(costs.time))
    n_pairs = len(cls)
    pair_cols, class_cols = np.arange(n_pairs), n_pairs + np.arange(n_classes)
    row_blocks, col_blocks, values = [], [], []
    # rows 0..3K: sum_g x_kg cost_kg - y_k <= 0 per condition; then Λ_lo y_k - sum_g λ_g x_kg <= 0
    for block, (pair_value, class_value) in enumerate(
        ((costs.time[cls, grp], -1.0), (costs.places[cls, grp], -1.0), (costs.band[cls, grp], -1.0),
         (-rates[grp], costs.low))):
        row_blocks += [block * n_classes + cls, block * n_classes + np.arange(n_classes)]
        col_blocks += [pair_cols, class_cols]
        values += [pair_value, np.broadcast_to(class_value, n_classes)]
    shape = (4 * n_classes, n_pairs + n_classes)
    a_ub = csr_matrix((np.concatenate(values), (np.concatenate(row_blocks), np.concatenate(col_blocks))), shape=shape)
    a_eq = csr_matrix((np.ones(n_pairs), (grp, pair_cols)), shape=(n_groups, n_pairs + n_classes))
    objective = np.concatenate([np.zeros(n_pairs), np.ones(n_classes)])
    result = linprog(objective, A_ub=a_ub, b_ub=np.zeros(shape[0]), A_eq=a_eq, b_eq=counts, bounds=(0, None),
                     method="highs-ipm")
    if result.status != 0:
        return None
    duals = np.maximum(0.0, -result.ineqlin.marginals.reshape(4, n_classes))
    weights, low_weights = duals[:3].T, duals[3]
    total = weights.sum(axis=1)
    limit = 1.0 + costs.low * low_weights
    weights = weights * np.where(total > limit, limit / np.maximum(total, 1e-300), 1.0)[:, None]
    return weights, low_weights
