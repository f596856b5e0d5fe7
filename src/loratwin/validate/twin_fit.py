"""The twin-in-the-loop fit of a profile's step-time terms on real runs.

Replay the runs with the current profile, record for each run the mean
value of every step-time term (weighted by tokens emitted, and per step), and solve a non-negative
least-squares problem in relative error on two kinds of equations: the run's measured mean ITL
(all runs), and its mean step time (runs whose throughput is capacity-bound, where the measured
throughput fixes the mean step time: steps_twin x throughput_twin / throughput_real steps took the
window). Terms are linear in the coefficients, so each solve is exact for the replayed dynamics;
a few rounds let the dynamics follow the coefficients. The round with the lowest combined error
on the fitting runs is kept. Only global coefficients are fitted.

Measured steps that need no replay (`StepEquations`: calibrate's LoRA-overhead runs, whose mean ITL
is one step at a known batch) can join the solve, each row weighing like `weight` runs; their
error then counts in a round's score in the same proportion.

Which terms are free is a choice of the caller: `calibrate` frees the LoRA and prefill terms
(RUN_TERMS) and keeps the base terms fitted on the decode runs; `loratwin profile fit`
(fit_profile.py) frees every additive term (FIT_ALL_TERMS), with a weak pull towards the start
profile's values (`prior_weight`) that settles what the runs cannot tell apart (with an adapter in
every step, the base-model step and the LoRA step cost are one sum).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from loratwin.errors import InputError
from loratwin.profiles.model import Profile
from loratwin.validate.errors import half_smape
from loratwin.validate.replay import STEP_TERM_FIELDS, ReplayResult, replay_runs
from loratwin.validate.runs import RealRun

# Terms of the step time fitted on the base-model decode runs, and on the real multi-LoRA runs.
BASE_TERMS = ("base_ms", "per_seq_ms", "per_context_token_ms")
RUN_TERMS = ("lora_step_ms", "per_prefill_token_ms", "lora_per_adapter_ms", "lora_per_seq_per_slot_ms", "lora_per_rank_ms",
             "lora_per_prefill_token_per_slot_ms")
# Every term fitted when no decode measurement exists (lora_per_slot_ms stays out, as in calibrate:
# with lora_per_seq_per_slot_ms and the rank term it leaves the runs' equations nearly singular).
FIT_ALL_TERMS = BASE_TERMS + RUN_TERMS
# A run counts as capacity-bound (its throughput set by the step time) below this served/offered.
CAPACITY_BOUND_RATIO = 0.97
# A run whose measured duration passes its send window by more than this factor drained its queue
# after the window (a lab's client waits for every request: `loratwin profile import`).
DRAINED = 1.05


@dataclass(frozen=True)
class StepEquations:
    """Measured mean step times at known step terms: `terms` (rows x STEP_TERM_FIELDS) priced by the
    profile's coefficients, plus `overhead_ms` not fitted (the scheduler's), should make `step_ms`.
    Each row weighs like `weight` runs in the fit."""

    terms: np.ndarray
    overhead_ms: np.ndarray
    step_ms: np.ndarray
    weight: float

    def predicted_ms(self, profile: Profile) -> np.ndarray:
        st = profile.step_time.model_dump()
        return self.terms @ np.array([st[name] for name in STEP_TERM_FIELDS]) + self.overhead_ms

    def error(self, profile: Profile) -> float:
        return half_smape(self.step_ms, self.predicted_ms(profile))


@dataclass
class FitRound:
    """One round of the twin-in-the-loop fit: the profile replayed and its errors on the fitting runs."""

    profile: Profile
    throughput_error: float
    itl_error: float
    starvation_agreement: float
    results: list[ReplayResult] = field(repr=False, default_factory=list)
    # the half-SMAPE on the StepEquations, and their share of the fit's weight (0 without them)
    equations_error: float | None = None
    equations_share: float = 0.0

    @property
    def score(self) -> float:
        # errors in %, starvation disagreements weigh like percent points of error
        runs = self.throughput_error + self.itl_error + 100 * (1 - self.starvation_agreement)
        return runs + self.equations_share * (self.equations_error or 0.0)


def _score(profile: Profile, results: Sequence[ReplayResult], extra: StepEquations | None = None) -> FitRound:
    ok = [r for r in results if r.started and r.run.has_metrics]
    flags = [r for r in ok if r.run.starved is not None]
    return FitRound(
        equations_error=extra.error(profile) if extra is not None else None,
        equations_share=extra.weight * len(extra.step_ms) / max(1, len(ok)) if extra is not None else 0.0,
        profile=profile,
        throughput_error=half_smape([r.run.measured["total_tok_s"] for r in ok], [r.total_tok_s for r in ok]),
        itl_error=half_smape([r.run.measured["mean_itl_ms"] for r in ok], [r.mean_itl_ms for r in ok]),
        starvation_agreement=float(np.mean([r.starved == r.run.starved for r in flags])) if flags else 1.0,
        results=list(results),
    )


def measured_saturation(run: RealRun) -> float | None:
    """Served over offered load as measured. A drained run's throughput_over_offered spans the drain
    and stays near 1 however saturated the server was: its throughput over the offered load of the
    send window says it instead."""
    m = run.measured
    window, duration, offered = m.get("configured_time_s"), m.get("duration_s"), m.get("approx_offered_tok_s")
    if window and duration and offered and duration > DRAINED * window:
        return m["total_tok_s"] / offered
    return m.get("throughput_over_offered")


@dataclass(frozen=True)
class Equations:
    """The fit's equations before scaling: row i asks terms[i] @ coefficients = target_ms[i] (the
    measured ITL or step less the overhead not fitted), in relative error (each row scaled by
    `scale`: weight / measured time); `itl_row` marks the runs' ITL rows."""

    terms: np.ndarray
    target_ms: np.ndarray
    scale: np.ndarray
    itl_row: np.ndarray


def fit_equations(results: Sequence[ReplayResult], extra: StepEquations | None = None) -> Equations:
    """Per replayed run, its mean ITL (all runs) and mean step time (capacity-bound runs) as
    equations in the step terms (see the module docstring); then `extra`'s rows."""
    terms, target, scale, itl_row = [], [], [], []

    def add(row_terms, measured_ms, overhead_ms, weight, is_itl):
        terms.append(row_terms)
        target.append(measured_ms - overhead_ms)
        scale.append(weight / measured_ms)
        itl_row.append(is_itl)

    for r in results:
        if not (r.started and r.run.has_metrics and r.mean_itl_ms):
            continue
        itl = r.run.measured["mean_itl_ms"] / r.itl_delivery_factor  # as the twin's steps would make it
        add(r.terms_per_token, itl, r.overhead_per_token_ms, 1.0, True)
        real_ratio = measured_saturation(r.run)
        if real_ratio is not None and real_ratio < CAPACITY_BOUND_RATIO and r.throughput_over_offered < CAPACITY_BOUND_RATIO:
            step = r.duration_s * 1000 / r.steps * r.total_tok_s / r.run.measured["total_tok_s"]
            add(r.terms_per_step, step, r.overhead_per_step_ms, 1.0, False)
    if extra is not None:
        for row_terms, overhead, step in zip(extra.terms, extra.overhead_ms, extra.step_ms, strict=True):
            add(row_terms, step, overhead, extra.weight, False)
    width = len(STEP_TERM_FIELDS)
    return Equations(np.array(terms).reshape(-1, width), np.array(target), np.array(scale), np.array(itl_row, bool))


def _solve_run_terms(
    profile: Profile,
    results: Sequence[ReplayResult],
    free: Sequence[str] = RUN_TERMS,
    prior_weight: float = 0.0,
    prior: dict[str, float] | None = None,
    extra: StepEquations | None = None,
) -> dict[str, float]:
    """Non-negative least squares of the `free` step terms (the others held at the profile's values)
    on the replayed runs' equations, in relative error. With `prior_weight` > 0, one more row per
    free term pulls its share of a typical run's ITL towards that of `prior` (default: the
    profile's own values), by that weight. `extra` adds its rows, each scaled by its weight."""
    from scipy.optimize import nnls

    st = profile.step_time.model_dump()
    fixed = np.array([0.0 if name in free else st[name] for name in STEP_TERM_FIELDS])
    columns = [STEP_TERM_FIELDS.index(name) for name in free]
    eq = fit_equations(results, extra)
    a = eq.scale[:, None] * eq.terms[:, columns]
    b = eq.scale * (eq.target_ms - eq.terms @ fixed)
    # without the pull towards the start, each free term needs an equation
    if not len(b) or (prior_weight <= 0 and len(b) < len(columns)):
        raise InputError(f"too few usable runs to fit the step time ({len(b)} equations for {len(columns)} terms)")
    if prior_weight > 0:
        # a term's share of the ITL per unit of its coefficient, in a typical run
        scale = prior_weight * np.median(a[eq.itl_row], axis=0)
        start = prior or st
        a = np.vstack([a, np.diag(scale)])
        b = np.concatenate([b, scale * np.array([start[name] for name in free])])
    coef, _ = nnls(a, b)
    return {name: round(float(c), 9) for name, c in zip(free, coef, strict=True)}


def fit_step_time_on_runs(
    profile: Profile,
    runs: Sequence[RealRun],
    *,
    rounds: int = 4,
    seeds: Sequence[int] = (0,),
    workers: int | None = None,
    duration_s: float | None = None,
    on_round: Callable[[int, FitRound], None] | None = None,
    on_replay_done: Callable[[], None] | None = None,
    free: Sequence[str] = RUN_TERMS,
    prior_weight: float = 0.0,
    server: dict[str, int] | None = None,
    extra: StepEquations | None = None,
) -> tuple[Profile, list[FitRound]]:
    """The twin-in-the-loop fit of the `free` step terms (see the module docstring), each run
    replayed over `duration_s` or else its own window (`replay_runs`); `server`:
    flags every replay runs with (max_num_seqs, max_num_batched_tokens; default vLLM 0.8.5's as in
    the reference runs); `extra`: measured steps solved with the runs (StepEquations)."""
    history: list[FitRound] = []
    current = profile
    prior = profile.step_time.model_dump()
    for i in range(rounds + 1):
        results = replay_runs(runs, lambda _model, fitted=current: fitted, seeds=seeds, workers=workers,
                              duration_s=duration_s, on_done=on_replay_done, server=server)
        fit_round = _score(current, results, extra)
        history.append(fit_round)
        if on_round:
            on_round(i, fit_round)
        if i == rounds:
            break
        terms = _solve_run_terms(current, results, free, prior_weight, prior, extra)
        if i > 0:
            # half steps after the first: the dynamics answer the coefficients, and full steps
            # oscillate between over- and under-loaded fits
            previous = current.step_time.model_dump()
            terms = {k: round((v + previous[k]) / 2, 9) for k, v in terms.items()}
        step = current.step_time.model_copy(update={**terms, "lora_factor_base": 1.0, "lora_factor_per_adapter": 0.0})
        current = current.model_copy(update={"step_time": step})
    best = min(history, key=lambda r: r.score)
    return best.profile, history
