"""Recommend a vLLM configuration for a list of LoRA adapters on one GPU: placement on one GPU.

The answer (how many of the adapters one GPU serves, with how many GPU slots `--max-loras`, and
the predicted throughput) is the greedy placement's first GPU: adapters taken in the fill order
(`loratwin.plan.placement.fill`; or in the order given, with `keep_order`), as many as the
acceptance rule accepts, at the accepted `max_loras` with the highest predicted throughput. So
`recommend` and `place` always agree: all adapters fit on one GPU exactly when `place` uses one,
and the adapters recommended, placed by `place`, land on one GPU with the same `--max-loras`.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loratwin import budget
from loratwin.errors import InputError
from loratwin.plan.judge import AcceptanceRule, GpuCheck, GpuVerdict, make_check, resolve_profile
from loratwin.plan.judge.handover import TWIN_RUNS_PER_SHARE
from loratwin.plan.placement import ShareJudge, as_workload
from loratwin.plan.placement.fill import fill_order, largest_prefix
from loratwin.plan.placement.place import refused_alone
from loratwin.plan.placement.result import DEFAULT_ADAPTER_DIR, vllm_command
from loratwin.profiles import Profile
from loratwin.slo import Slo
from loratwin.workload import WorkloadSpec

FILL_ORDER = "as place fills a GPU: the largest rank first, busy and quiet adapters alternately"
GIVEN_ORDER = "the first adapters in the order given"


@dataclass
class Recommendation:
    profile: str
    model_id: str
    adapters_given: int
    served: int
    served_adapter_ids: list[str]
    selection_rule: str
    max_loras: int
    max_cpu_loras: int
    max_lora_rank: int
    predicted_total_tok_s: float
    offered_tok_s: float
    predicted_wait_s: float  # mean wait for a place in the batch
    predicted_kv_queue_s: float  # mean wait for KV admission
    accepted: bool
    deciding_limit: str  # the limit closest to (or past) its value at the recommendation
    check: str  # the estimator whose predictions the rule judged
    limits: dict[str, Any]  # the rule
    why: list[str]
    next_step_up: dict[str, Any] | None  # one more adapter: what refuses it
    vllm_command: list[str]
    published_method: dict[str, Any] | None = None  # the optimum models' answer, for comparison
    verification: dict[str, Any] | None = None
    refinement: dict[str, Any] | None = None
    source: str = "cost-model"
    notes: list[str] = field(default_factory=list)
    # the learned models behind the answer or beside it: what used them, where they are, their families
    models_used: list[dict[str, Any]] = field(default_factory=list)
    # each SLO of the rule at the answer: its predicted value (ms) and whether it is met (loratwin.slo.slo_status)
    slos: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def vllm_command_line(self) -> str:
        return shlex.join(self.vllm_command)


def rule_limits(rule: AcceptanceRule, profile: Profile) -> dict[str, Any]:
    return {
        "starvation_threshold": rule.starvation_threshold,
        "max_wait_s": rule.max_wait_s,
        "max_kv_use": rule.kv_use_limit(profile),
        "window_s": rule.window_s,
        "slos": [slo.text for slo in rule.slos],
    }


def fill_sequence(workload: WorkloadSpec, keep_order: bool) -> list[int]:
    return list(range(len(workload.adapters))) if keep_order else fill_order(workload.adapters)


def recommend(
    workload: WorkloadSpec,
    profile: str | Profile = "llama-3.1-8b-instruct",
    *,
    check: GpuCheck | None = None,
    rule: AcceptanceRule | None = None,
    keep_order: bool = False,
    adapter_dir: str = DEFAULT_ADAPTER_DIR,
    published: bool = True,
    models: str | Path | None = None,
    profile_source: str | None = None,
) -> Recommendation:
    """How many of `workload`'s adapters one GPU of `profile` serves, at which max_loras: the most
    the rule accepts on `check`'s predictions (the cost model by default). With `published`, the
    optimum models' answer comes beside it when there are models for the profile (shipped, or in
    `models`, a directory `loratwin train` wrote); when there are none, a note says how to train
    them (for `profile_source`: the profile as the user gave it). `models_used` names every learned
    model involved.

    Latency SLOs: `rule=AcceptanceRule(slos=parse_slos(["ttft_p99:5000"]))` (loratwin.slo); the
    SLOs the estimator does not predict are judged by the twin on the shares it accepts (a note
    says so), and `slos` holds each SLO's value at the answer."""
    workload = as_workload(workload)
    budget.require(budget.recommendation_estimate(len(workload.adapters)))
    profile = resolve_profile(profile)
    check = check or make_check("auto", profile, workload.lengths, rule=rule, arrival=workload.arrival)
    note = getattr(check, "note", None)
    if note is not None:
        budget.require(budget.twin_placement_estimate(
            len(workload.adapters), workload.aggregate_rate_req_s, check.rule.window_s,
            slot_candidates=TWIN_RUNS_PER_SHARE, gpus_judged=1, flag="the twin judging the SLOs (--slo)"))
    judge = ShareJudge(check, profile, list(workload.adapters))
    sequence = fill_sequence(workload, keep_order)
    served = largest_prefix(sequence, judge.ok)
    if served == 0:
        first = workload.adapters[sequence[0]]
        verdict = judge(sequence[:1])
        # a reason: nothing starts in memory, which replicas do not change
        raise refused_alone(first, profile.name, verdict.reason or verdict.explain(), "does not fit on",
                            splits=not verdict.reason)
    rec = describe_share(workload, profile, judge, sequence, served, keep_order=keep_order, adapter_dir=adapter_dir)
    if note is not None:
        rec.notes.append(note)
    learned = getattr(getattr(check, "screen", check), "models", None)
    if learned is not None:
        docs = {"total_tok_s": learned.throughput, "starved": learned.starvation}
        rec.models_used.append(models_entry(
            "the learned check (throughput, starvation)", learned.source,
            next((d["profile"] for d in docs.values() if d.get("profile")), None),
            {target: d.get("family", d.get("kind")) for target, d in docs.items()}))
    if published:
        answer = rec.published_method = _published(workload, profile, models, check.rule.slos)
        if answer is None:
            rec.notes.append(no_models_note(profile, profile_source))
        else:
            if answer["slo_note"]:  # its models were trained under other SLOs than the rule's
                rec.notes.append(answer["slo_note"])
            rec.models_used.append(models_entry(
                "the published method (optimum models)", answer["models"], answer["models_profile"],
                {t: answer[f"{t}_family"] for t in ("best_served", "best_max_loras", "best_total_tok_s")}))
    return rec


def models_entry(use: str, directory: str, profile: str | None, families: dict[str, str]) -> dict[str, Any]:
    """Which learned models did what: their folder (shipped or trained), the profile they were trained
    for and the family per target."""
    from loratwin.learn.bundle import MODELS_DIR

    return {"use": use, "directory": str(directory), "shipped": Path(directory).resolve().parent == MODELS_DIR.resolve(),
            "profile": profile, "families": families}


def no_models_note(profile: Profile, profile_source: str | None) -> str:
    """What to say when a profile has no trained models, and how to train them."""
    given = profile_source or f"{profile.name}.yaml"
    return (f"no trained models for profile {profile.name}, so no published-method answer and no --check learned; "
            f"train them with `loratwin train --profile {given} --out MODELS` (about 15 min on 2 cores), "
            "then pass --models MODELS")


def describe_share(workload: WorkloadSpec, profile: Profile, judge: ShareJudge, sequence: list[int], served: int, *,
                   max_loras: int | None = None, keep_order: bool = False,
                   adapter_dir: str = "./adapters") -> Recommendation:
    """The recommendation of the first `served` adapters of `sequence` on one GPU: at the best
    accepted max_loras, or at `max_loras` when given (it must be one the estimator priced)."""
    n = len(sequence)
    check = judge.check
    members = sequence[:served]
    verdict = judge(members)
    option = verdict.chosen() if max_loras is None else verdict.option(max_loras)
    if option is None:
        raise InputError(f"{served} adapters: no configuration starts at max_loras {max_loras} "
                         f"({verdict.reason or 'not among the values priced'})")
    ids = [workload.adapters[i].id for i in members]
    order = GIVEN_ORDER if keep_order else FILL_ORDER
    why = [f"{served} of the {n} adapters on one GPU ({order}): the {check.name} estimator's predictions, judged by "
           "the acceptance rule"]
    if option is verdict.best:
        why.append(f"--max-loras {option.max_loras}: the accepted value with the highest predicted throughput; its "
                   f"tightest limit: {option.deciding}")
    else:
        state = "accepts" if option.accepted else "refuses"
        why.append(f"--max-loras {option.max_loras}: the {check.name} estimator's rule {state} it ({option.deciding})")
    next_up = None
    if served < n:
        nxt = workload.adapters[sequence[served]]
        more = judge(sequence[: served + 1])
        next_up = {"adapter": nxt.id, "served": served + 1, "refused_by": _refusal(more)}
        if not more.ok:
            why.append(f"not {served + 1}: with {nxt.id!r} (rank {nxt.rank}, {nxt.rate_req_s:g} req/s) {_refusal(more)}")
    return Recommendation(
        profile=profile.name,
        model_id=profile.model,
        adapters_given=n,
        served=served,
        served_adapter_ids=ids,
        selection_rule=order,
        max_loras=option.max_loras,
        max_cpu_loras=served,
        max_lora_rank=verdict.max_lora_rank,
        predicted_total_tok_s=option.predicted_tok_s,
        offered_tok_s=verdict.offered_tok_s,
        predicted_wait_s=option.wait_s,
        predicted_kv_queue_s=option.queue_s,
        accepted=option.accepted,
        deciding_limit=option.deciding,
        check=check.name,
        limits=rule_limits(check.rule, profile),
        slos=check.rule.slo_values(option.prediction),
        why=why,
        next_step_up=next_up,
        vllm_command=vllm_command(profile.model, ids, option.max_loras, verdict.max_lora_rank, adapter_dir,
                                  profile.serve_arguments()),
        source=check.name,
    )


def _refusal(verdict: GpuVerdict) -> str:
    """Why the rule refuses a share: the limit past its value at the least strained max_loras."""
    option = verdict.chosen()
    if option is None:
        return verdict.reason or "no max_loras value starts"
    if option.accepted:
        return f"accepted too (max_loras {option.max_loras}: {option.deciding})"
    return f"every max_loras is refused; the closest, max_loras {option.max_loras}: {option.deciding}"


def _published(workload: WorkloadSpec, profile: Profile, models: str | Path | None,
               slos: tuple[Slo, ...] = ()) -> dict[str, Any] | None:
    from loratwin.plan.recommend.published import published_answer

    try:
        return published_answer(workload, profile, models, slos=slos)
    except InputError:
        if models is not None:  # the user named them: say what is wrong
            raise
        return None  # no models ship for this profile
