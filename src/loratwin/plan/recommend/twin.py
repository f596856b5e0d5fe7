"""The twin on a recommendation, judged by the same acceptance rule: `refine` moves the served
count and `max_loras` to what the twin accepts; `verify` says whether the twin accepts the
recommendation and whether it would accept one adapter more."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from loratwin.plan.judge import SLOT_CANDIDATES, AcceptanceRule, GpuCheck, GpuVerdict, TwinCheck, resolve_profile
from loratwin.plan.placement import ShareJudge
from loratwin.plan.recommend.one_gpu import Recommendation, describe_share, fill_sequence
from loratwin.profiles import Profile
from loratwin.workload import WorkloadSpec

# the twin's search steps from the recommended count, first by this share of it (each probe costs a few runs)
RESOLUTION = 0.02


def _twin_judge(rec: Recommendation, workload: WorkloadSpec, profile: Profile, rule: AcceptanceRule,
                seed: int, max_loras: int) -> ShareJudge:
    """The twin over the rule's window, at `max_loras` and its neighbours on the slot grid."""
    grid = sorted(SLOT_CANDIDATES)
    below = [s for s in grid if s < max_loras][-1:]
    above = [s for s in grid if s > max_loras][:1]
    check = TwinCheck(rule=rule, seed=seed, lengths=workload.lengths, arrival=workload.arrival,
                      slot_grid=tuple(below + [max_loras] + above))
    return ShareJudge(check, profile, list(workload.adapters))


def _point(verdict: GpuVerdict, max_loras: int, rule: AcceptanceRule) -> dict[str, Any]:
    option = verdict.option(max_loras) if max_loras else verdict.chosen()
    if option is None:
        return {"served": verdict.served, "max_loras": max_loras, "status": "cannot start",
                "reason": verdict.reason}
    p = option.prediction
    return {"served": verdict.served, "max_loras": option.max_loras, "status": "ok",
            "total_tok_s": p.predicted_tok_s, "shortfall": p.shortfall, "mean_ttft_s": p.mean_ttft_s,
            "idle_adapter_ttft_s": p.slot_wait_s, "accepted": option.accepted, "deciding_limit": option.deciding,
            "slos": rule.slo_values(p)}


def refine(rec: Recommendation, workload: WorkloadSpec, profile: str | Profile, *, rule: AcceptanceRule | None = None,
           seed: int = 0, keep_order: bool = False) -> dict[str, Any]:
    """The most adapters (in the recommendation's order) the twin accepts near the recommended
    count, searched in growing steps then bisected to RESOLUTION of the count, and the best
    accepted max_loras there among the recommended one and its grid neighbours."""
    profile = resolve_profile(profile)
    rule = rule or AcceptanceRule()
    judge = _twin_judge(rec, workload, profile, rule, seed, rec.max_loras)
    sequence = fill_sequence(workload, keep_order)
    served = _local_largest(lambda k: judge.ok(sequence[:k]), rec.served, len(sequence),
                            max(1, round(rec.served * RESOLUTION)))
    if served == 0:
        return {"served": rec.served, "max_loras": rec.max_loras, "holds": False,
                "point": _point(judge(sequence[: rec.served]), rec.max_loras, rule),
                "simulations": judge.check.simulations, "duration_s": rule.window_s, "seed": seed}
    verdict = judge(sequence[:served])
    return {"served": served, "max_loras": verdict.best.max_loras, "max_lora_rank": verdict.max_lora_rank, "holds": True,
            "point": _point(verdict, verdict.best.max_loras, rule), "simulations": judge.check.simulations,
            "duration_s": rule.window_s, "seed": seed}


def _local_largest(accepts, start: int, n: int, step: int) -> int:
    """The largest k in [1, n] with accepts(k), searched from `start` in steps doubling from
    `step`, then bisected (acceptance taken as monotone); 0 when even 1 is refused."""
    jump = step
    if accepts(start):
        lo, hi = start, None
        while lo < n:
            probe = min(n, lo + jump)
            if not accepts(probe):
                hi = probe
                break
            lo, jump = probe, jump * 2
        if hi is None:
            return lo
    else:
        lo, hi = 0, start
        while hi > 1:
            probe = max(1, hi - jump)
            if accepts(probe):
                lo = probe
                break
            hi, jump = probe, jump * 2
        if lo == 0:
            return 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if accepts(mid):
            lo = mid
        else:
            hi = mid
    return lo


def apply_refinement(rec: Recommendation, refinement: dict[str, Any], workload: WorkloadSpec, profile: str | Profile,
                     check: GpuCheck, *, keep_order: bool = False, adapter_dir: str = "./adapters") -> Recommendation:
    """The recommendation moved to the twin's answer, described with `check`'s predictions there as
    any recommendation is (the twin's own numbers are in `refinement`); the estimator's answer
    stays in `refinement`."""
    refinement = refinement | {"estimator_answer": {"served": rec.served, "max_loras": rec.max_loras,
                                                    "predicted_total_tok_s": rec.predicted_total_tok_s}}
    served, max_loras = refinement["served"], refinement["max_loras"]
    if refinement["holds"] and (served, max_loras) != (rec.served, rec.max_loras):
        profile = resolve_profile(profile)
        judge = ShareJudge(check, profile, list(workload.adapters))
        moved = describe_share(workload, profile, judge, fill_sequence(workload, keep_order), served,
                               max_loras=max_loras, keep_order=keep_order, adapter_dir=adapter_dir)
        notes = list(rec.notes)
        if not moved.accepted:
            notes.append(f"the {check.name} estimator would refuse this point ({moved.deciding_limit}); the twin, "
                         f"over {refinement['duration_s']:g} s, accepts it")
        rec = replace(moved, published_method=rec.published_method, notes=notes, models_used=rec.models_used)
    return replace(rec, refinement=refinement, source=f"{rec.check}, refined with the twin")


def verify(rec: Recommendation, workload: WorkloadSpec, profile: str | Profile, *, rule: AcceptanceRule | None = None,
           seed: int = 0, keep_order: bool = False) -> dict[str, Any]:
    """The twin at the recommendation, judged by the rule, and with one adapter more (at the
    recommended max_loras and its neighbours): holds when the first is accepted; conservative
    when the second is accepted too."""
    profile = resolve_profile(profile)
    rule = rule or AcceptanceRule()
    judge = _twin_judge(rec, workload, profile, rule, seed, rec.max_loras)
    sequence = fill_sequence(workload, keep_order)
    here = _point(judge(sequence[: rec.served]), rec.max_loras, rule)
    points = [here | {"recommended": True}]
    more = None
    if rec.served < len(sequence):
        verdict = judge(sequence[: rec.served + 1])
        more = _point(verdict, 0, rule)
        points.append(more | {"recommended": False})
    holds = here["status"] == "ok" and here["accepted"]
    if not holds:
        verdict_text = ("the recommended configuration cannot start" if here["status"] != "ok"
                        else f"the twin refuses it: {here['deciding_limit']}")
    elif more is None:
        verdict_text = f"holds: the twin accepts it ({here['deciding_limit']}); every adapter given is served"
    elif more["status"] == "ok" and more["accepted"]:
        verdict_text = (f"holds ({here['deciding_limit']}); conservative: the twin accepts one adapter more at "
                        f"max_loras {more['max_loras']}")
    else:
        verdict_text = f"holds: the twin accepts it ({here['deciding_limit']}) and refuses one adapter more"
    return {"holds": holds, "verdict": verdict_text, "duration_s": rule.window_s, "seed": seed, "points": points,
            "simulations": judge.check.simulations}
