"""Judging one GPU: is this share of adapters, at this `max_loras`, acceptable?

- `rule.AcceptanceRule` holds the limits (starvation threshold, wait limit, KV-use limit, latency SLOs) and is
  the only place where a prediction is accepted or refused;
- the estimators only predict what the rule judges: `cost_model.CostModelCheck` (a steady-state
  model of the twin, microseconds), `learned.LearnedCheck` (the models trained on twin data) and
  `twin.TwinCheck` (simulation, seconds); `handover.TwinJudgesSlos` lets the twin judge the SLOs an
  estimator does not predict;
- `verdict.GpuVerdict` is an estimator's answer for one GPU: every `max_loras` that starts, each
  with its prediction and judgement, and the best accepted one.

    from loratwin.plan.judge import AcceptanceRule, make_check
    check = make_check("cost-model", "llama-3.1-8b-instruct", rule=AcceptanceRule(max_wait_s=30))
    verdict = check.evaluate(adapters, profile)
    verdict.best.max_loras, verdict.explain()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from loratwin.errors import InputError
from loratwin.plan.judge.cost_model import CostModelCheck
from loratwin.plan.judge.handover import TwinJudgesSlos, unpredicted_slos
from loratwin.plan.judge.learned import LearnedCheck, learned_models
from loratwin.plan.judge.rule import DEFAULT_MAX_WAIT_S, STARVATION_THRESHOLD, AcceptanceRule, Prediction
from loratwin.plan.judge.slots import (
    SLOT_CANDIDATES,
    adapter_server_rank,
    checked_slot_grid,
    resolve_profile,
    startable_slots,
)
from loratwin.plan.judge.twin import TWIN_SLOT_CANDIDATES, TwinCheck, twin_prediction
from loratwin.plan.judge.verdict import GpuCheck, GpuVerdict, SlotOption
from loratwin.profiles import Profile
from loratwin.workload import LengthSpec, PoissonArrival, ShareGPTLengths


def _cost_model(profile, lengths, rule, arrival, models_dir, slot_grid=SLOT_CANDIDATES) -> GpuCheck:
    flags = resolve_profile(profile).server_flags()  # the server the profile holds for
    return CostModelCheck(lengths, rule, max_num_seqs=flags.max_num_seqs,
                          max_num_batched_tokens=flags.max_num_batched_tokens, slot_grid=slot_grid)


def _twin(profile, lengths, rule, arrival, models_dir, slot_grid=TWIN_SLOT_CANDIDATES) -> GpuCheck:
    return TwinCheck(rule=rule, lengths=lengths or ShareGPTLengths(), arrival=arrival or PoissonArrival(),
                     slot_grid=slot_grid)


def _learned(profile, lengths, rule, arrival, models_dir, slot_grid=SLOT_CANDIDATES) -> GpuCheck:
    check = LearnedCheck.for_profile(profile, lengths, models_dir, rule=rule, slot_grid=slot_grid)
    if check is None:
        where = f"in {models_dir}" if models_dir is not None else "shipped"
        raise InputError(f"--check learned: no learned models {where} for profile {profile.name}; train them with "
                         "`loratwin train --profile PROFILE --out MODELS` and pass --models MODELS")
    return check


# Estimators by name; "auto" is the cost model, the one whose placements were verified with the twin.
ESTIMATORS: dict[str, Callable[..., GpuCheck]] = {
    "auto": _cost_model,
    "cost-model": _cost_model,
    "learned": _learned,
    "twin": _twin,
}
CHECKS = tuple(ESTIMATORS)


def make_check(kind: str, profile: Profile | str, lengths: LengthSpec | ShareGPTLengths | None = None,
               *, rule: AcceptanceRule | None = None, arrival: object | None = None,
               models_dir: str | Path | None = None, slot_grid: Sequence[int] | None = None) -> GpuCheck:
    """An estimator by name (auto, cost-model, learned, twin) judged by `rule` (default limits when
    None). The twin simulates over the rule's window with the workload's `arrival` process (the
    cost model takes arrivals as Poisson); the learned models come from `models_dir` when given.
    When the rule has SLOs the estimator does not predict, the answer is a `TwinJudgesSlos`: the
    estimator screens, the twin judges those SLOs (its `note` says so). `slot_grid`: the max_loras
    values tried below a share's adapter count (beside the count itself), instead of each
    estimator's own (e.g. only the values a fleet deploys, or those a benchmark measured)."""
    if kind not in ESTIMATORS:
        raise InputError(f"--check must be one of {', '.join(CHECKS)}, got {kind!r}")
    profile, rule = resolve_profile(profile), rule or AcceptanceRule()
    grid = {} if slot_grid is None else {"slot_grid": checked_slot_grid(slot_grid)}
    check = ESTIMATORS[kind](profile, lengths, rule, arrival, models_dir, **grid)
    missing = unpredicted_slos(check, check.rule)
    if not missing:
        return check
    twin = _twin(profile, lengths, check.rule, arrival, models_dir, **grid)
    return TwinJudgesSlos(check, twin, missing)


__all__ = [
    "CHECKS", "DEFAULT_MAX_WAIT_S", "SLOT_CANDIDATES", "STARVATION_THRESHOLD", "AcceptanceRule", "CostModelCheck",
    "GpuCheck", "GpuVerdict", "LearnedCheck", "Prediction", "SlotOption", "TwinCheck", "TwinJudgesSlos", "adapter_server_rank",
    "learned_models", "make_check", "resolve_profile", "startable_slots", "twin_prediction",
]
