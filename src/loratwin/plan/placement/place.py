"""Placement: which adapters go on which GPU, with which vLLM flags, on as few GPUs as possible,
every GPU accepted by the acceptance rule.

    from loratwin.plan import place, verify_placement
    placement = place(adapters, "llama-3.1-8b-instruct")          # greedy, fewest GPUs
    placement = place(adapters, "llama-3.1-8b-instruct", gpus=8)  # best spread over 8 GPUs
    print("\\n".join(placement.vllm_serve_commands()))
    report = verify_placement(placement, "llama-3.1-8b-instruct")  # the twin on every GPU, same rule

Every algorithm judges a GPU's share through the same estimator and rule, so their GPU counts
compare. Each GPU serves its adapters with `max_cpu_loras` = its adapter count (all preloaded in
CPU memory, as in the reference runs), `max_lora_rank` = the smallest the profile knows that
admits its largest rank, and the best accepted `max_loras`. An adapter too busy for one GPU is
served from replicas on different GPUs, its requests split by a routing table
(`Placement.routing`, see `replicas`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from loratwin import budget
from loratwin.errors import InputError
from loratwin.grammar import plural
from loratwin.plan.bound import lower_bound_gpus
from loratwin.plan.judge import AcceptanceRule, GpuCheck, GpuVerdict, make_check, resolve_profile
from loratwin.plan.placement.algorithms import ALGORITHMS, PlacementRun
from loratwin.plan.placement.replicas import Split, split_busy
from loratwin.plan.placement.result import GpuPlan, Placement
from loratwin.plan.placement.search import DEFAULT_SEARCH_MOVES
from loratwin.plan.placement.shares import ShareJudge
from loratwin.profiles import Profile
from loratwin.profiles.lora_rank import VLLM_MAX_LORA_RANKS
from loratwin.workload import AdapterSpec, WorkloadSpec

COMPARED = ("greedy", "round-robin", "least-loaded", "rank-grouped")


def as_workload(adapters: Sequence[AdapterSpec] | WorkloadSpec) -> WorkloadSpec:
    if isinstance(adapters, WorkloadSpec):
        return adapters
    adapters = tuple(adapters)
    if not adapters:
        raise InputError("no adapters to place")
    try:
        return WorkloadSpec(adapters=adapters)
    except ValueError as err:  # pydantic's ValidationError: duplicate ids
        raise InputError(f"adapters: {err}") from None


def default_check(profile: Profile | str, workload: WorkloadSpec, rule: AcceptanceRule | None = None) -> GpuCheck:
    return make_check("auto", profile, workload.lengths, rule=rule, arrival=workload.arrival)


def lower_bound(adapters: Sequence[AdapterSpec] | WorkloadSpec, profile: Profile | str,
                check: GpuCheck | None = None) -> int:
    """A lower bound on the GPUs any placement `check` accepts needs (see `loratwin.plan.bound`)."""
    workload = as_workload(adapters)
    profile = resolve_profile(profile)
    return lower_bound_gpus(list(workload.adapters), profile, check or default_check(profile, workload))


def gpu_plan(index: int, members: Sequence[int], judge: ShareJudge, max_loras: int | None = None) -> GpuPlan:
    """GPU `index` serving `members` at the option the rule chooses for them, or at `max_loras` where
    the rule accepts it there (a running server keeps its flags)."""
    verdict = judge(members)
    kept = verdict.option(max_loras) if max_loras is not None else None
    option = kept if kept is not None and kept.accepted else verdict.chosen()
    if option is None or verdict.max_lora_rank is None:
        raise InputError(f"GPU {index}: no configuration starts ({verdict.reason or 'out of memory'})")
    return GpuPlan(
        index=index,
        adapters=tuple(judge.adapters[i] for i in members),
        max_loras=option.max_loras,
        max_lora_rank=verdict.max_lora_rank,
        predicted_tok_s=option.predicted_tok_s,
        offered_tok_s=verdict.offered_tok_s,
        accepted=option.accepted,
        pressure=option.pressure,
        deciding=option.deciding,
        tightest=option.tightest,
        wait_s=option.wait_s,
        queue_s=option.queue_s,
        slos=judge.check.rule.slo_values(option.prediction) if judge.check.rule.slos else None,
    )


def split_for_gpus(judge_alone: Callable[[AdapterSpec], GpuVerdict], profile_name: str,
                   adapters: Sequence[AdapterSpec]) -> Split:
    """The adapters as the placement places them: whole, or split into replicas where one GPU
    refuses the adapter alone at its rate (`replicas`); an adapter refused alone even without
    traffic is refused here."""

    def refuse(adapter: AdapterSpec, verdict: GpuVerdict) -> InputError:
        why = verdict.reason or f"refused even alone on a GPU without traffic ({verdict.explain()})"
        return refused_alone(adapter, profile_name, why, "cannot be placed on", splits=False)

    return split_busy(adapters, judge_alone, refuse)


def refused_alone(adapter: AdapterSpec, profile_name: str, why: str, verb: str, splits: bool = True) -> InputError:
    """The refusal of an adapter no GPU can serve alone, with what to do: a rank above vLLM's largest
    max_lora_rank cannot be served at all (the rule: loratwin.profiles.lora_rank), nor one refused
    without traffic; a busy one (`splits`) from several replicas that split its traffic."""
    a = adapter
    if a.rank > VLLM_MAX_LORA_RANKS[-1]:
        todo = (f"No number of GPUs or replicas serves it: reduce the adapter to rank {VLLM_MAX_LORA_RANKS[-1]} "
                "or below")
    elif splits:
        todo = "`loratwin place` serves it from several replicas on different GPUs that split its traffic"
    else:
        todo = "No number of GPUs or replicas serves it"
    return InputError(f"adapter {a.id!r} (rank {a.rank}, {a.rate_req_s:g} req/s) {verb} one GPU of profile "
                      f"{profile_name}: {why}. {todo}.")


def place(
    adapters: Sequence[AdapterSpec] | WorkloadSpec,
    profile: Profile | str,
    gpus: int | None = None,
    algorithm: str = "greedy",
    check: GpuCheck | None = None,
    search_moves: int = DEFAULT_SEARCH_MOVES,
) -> Placement:
    """Place adapters on GPUs. Without `gpus`: the fewest GPUs the algorithm reaches with every GPU
    accepted by the check's rule. With `gpus=N`: the best placement on N GPUs (the greedy spreads
    the load over all N, then evens it out), or an InputError saying that N is not enough and how
    many are needed. After the greedy, up to `search_moves` moves of one adapter between GPUs try
    to free GPUs (`loratwin.plan.placement.search`); 0 keeps the greedy's own placement."""
    started = time.perf_counter()
    if algorithm not in ALGORITHMS:
        raise InputError(f"--algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1):
        raise InputError(f"--gpus must be an integer >= 1, got {gpus!r}")
    if isinstance(search_moves, bool) or not isinstance(search_moves, int) or search_moves < 0:
        raise InputError(f"--search-moves must be an integer >= 0, got {search_moves!r}")
    workload = as_workload(adapters)
    budget.require(budget.placement_estimate(len(workload.adapters), workload.aggregate_rate_req_s))
    profile = resolve_profile(profile)
    check = check or default_check(profile, workload)
    split = split_for_gpus(lambda a: check.evaluate([a], profile), profile.name, workload.adapters)
    items = split.items
    judge = ShareJudge(check, profile, items)
    notes: list[str] = [check.note] if getattr(check, "note", None) else []
    notes += split.note()
    # the bound does not depend on the placement: it is worked out beside the algorithm (the LP
    # solver and the compiled wait solver let go of the GIL) and waited for where first needed
    with ThreadPoolExecutor(max_workers=1) as beside:
        # on the adapters as given: the bound allows any split, not only the replicas made here
        pending = beside.submit(lower_bound_gpus, list(workload.adapters), profile, check)
        bins = ALGORITHMS[algorithm](PlacementRun(judge, search_moves, pending.result, notes), gpus)
        bound = pending.result()

    bins = [b for b in bins if b]
    plans = [gpu_plan(i, b, judge) for i, b in enumerate(bins)]
    if gpus is not None and len(plans) < gpus:
        empty = gpus - len(plans)
        notes.append(f"{empty:,} of the {plural(gpus, 'GPU')} {'gets' if empty == 1 else 'get'} no adapter: "
                     f"the load is light enough for {plural(len(plans), 'GPU')}, and moving adapters onto "
                     f"{'it' if empty == 1 else 'them'} would not lower the busiest GPU's strain")
    return Placement(
        profile=profile.name,
        model=profile.model,
        algorithm=algorithm,
        check=check.name,
        gpus=plans,
        lower_bound=bound,
        elapsed_s=time.perf_counter() - started,
        requested_gpus=gpus,
        notes=notes,
        lengths=workload.lengths,
        arrival=workload.arrival,
        serve_arguments=tuple(profile.serve_arguments()),
        slos=tuple(slo.text for slo in check.rule.slos),
        routing=split.routing(bins),
    )


def compare_algorithms(adapters: Sequence[AdapterSpec] | WorkloadSpec, profile: Profile | str,
                       check: GpuCheck | None = None, skip: str | None = None) -> dict[str, int | str]:
    """The fewest GPUs the greedy (with its search) and each baseline (round-robin, least-loaded,
    rank-grouped) need for these adapters under the same check, or why one cannot place them;
    `skip` leaves one out."""
    counts: dict[str, int | str] = {}
    for algorithm in COMPARED:
        if algorithm == skip:
            continue
        try:
            counts[algorithm] = place(adapters, profile, algorithm=algorithm, check=check).gpu_count
        except InputError as err:
            counts[algorithm] = str(err)
    return counts
