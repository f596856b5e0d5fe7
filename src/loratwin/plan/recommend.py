"""Recommend a vLLM configuration for a list of LoRA adapters on one GPU, from the trained models.

The answer: how many of the adapters one GPU serves without starving (the first N, in the order
given), with how many GPU slots (`--max-loras`), and the predicted throughput. Two model kinds
are consulted, both trained on twin data and loaded from JSON (no scikit-learn needed):

1. the per-configuration models score every candidate (served, max_loras) on the grid: throughput
   and the probability of starvation. The recommendation is the candidate with the highest
   predicted throughput among those predicted not to starve (probability below `max_starved_p`)
   and that the placement cost model accepts with requests waiting at most `max_wait_s` on average
   for a place in the batch (the models learnt the published GPU-level rule, which lets a GPU keep
   up while its quiet adapters wait minutes, or run with its KV cache full and every request
   queued for minutes);
2. the optimum models answer from the mix alone (the published method): best served, best
   max_loras, throughput there. Shown beside the first answer for comparison.

`verify` runs the twin at the recommendation and its neighbours (served and max_loras one grid
step up and down) and says whether the recommendation holds; `refine` moves it with the twin. Both
count a point usable when it does not starve and requests do not wait more than `max_wait_s` for
their first token: neither on average nor those sent while their adapter was idle (the ones that
must win a place in the batch).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.learn.bundle import ModelSet, load_model_set
from loratwin.learn.evaluators import predict, predict_target
from loratwin.learn.explain import decision_path
from loratwin.learn.features import (
    AdapterMix,
    as_matrix,
    config_features,
    workload_features,
)
from loratwin.plan.place_checks import DEFAULT_MAX_WAIT_S, CostModelCheck
from loratwin.plan.place_inputs import read_adapters_csv
from loratwin.profiles import Profile, load_profile
from loratwin.workload import ShareGPTLengths, WorkloadSpec, load_workload_yaml
from loratwin.workload.describe import expected_mean_rates

# Served counts and slot counts considered: the training grid's, plus the length of the list.
GRID_COUNTS = (16, 32, 64, 96, 128, 160, 192, 256, 320, 384)
SMALL_COUNTS = (1, 2, 4, 8)
DEFAULT_MAX_STARVED_P = 0.5


@dataclass
class Candidate:
    served: int
    max_loras: int
    predicted_total_tok_s: float
    starved_probability: float
    offered_tok_s: float
    predicted_wait_s: float = 0.0  # mean wait for a place in the batch (the placement cost model)
    predicted_queue_s: float = 0.0  # mean wait of every request for KV admission (the same model)
    cost_model_pressure: float = 0.0  # the cost model's busiest limit (> 1: it refuses the point)

    @property
    def predicted_starved(self) -> bool:
        return self.starved_probability >= 0.5


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
    starved_probability: float
    offered_tok_s: float
    predicted_wait_s: float | None  # None: not predicted (no wait limit) or no steady state
    max_wait_s: float | None
    models: dict[str, str]
    why: list[str]
    optimum_models: dict[str, Any]
    next_step_up: dict[str, Any] | None
    vllm_command: list[str]
    candidates_scored: int
    verification: dict[str, Any] | None = None
    refinement: dict[str, Any] | None = None  # the twin's local search, when asked for
    source: str = "models"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def vllm_command_line(self) -> str:
        return shlex.join(self.vllm_command)


# --- input -------------------------------------------------------------------------------------


def read_workload(path: str | Path) -> WorkloadSpec:
    """A workload from an adapters CSV (`adapter_id,rank,rate`) or a workload YAML file."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_workload_yaml(path)
    if path.suffix.lower() == ".csv":
        return read_adapters_csv(path)
    raise InputError(f"{path}: expected an adapters CSV (.csv: adapter_id,rank,rate) or a workload YAML (.yaml)")


def workload_mix(workload: WorkloadSpec, profile: Profile, duration_s: float = 3600.0) -> AdapterMix:
    """Rates (averaged over the run: schedules included), ranks and mean lengths of a workload."""
    if isinstance(workload.lengths, ShareGPTLengths):
        prompt, output = workload.lengths.means(profile.tokenizer or profile.name)
    else:
        prompt, output = workload.lengths.mean_prompt_tokens, workload.lengths.mean_output_tokens
    rates = expected_mean_rates(workload, duration_s)
    ranks = np.array([a.rank for a in workload.adapters], dtype=np.float64)
    return AdapterMix(rates, ranks, prompt, output)


# --- recommendation ----------------------------------------------------------------------------


def candidate_counts(n_adapters: int) -> list[tuple[int, int]]:
    """(served, max_loras) pairs to score: grid counts up to the list's length, and the length itself."""
    served_values = sorted({c for c in GRID_COUNTS + SMALL_COUNTS if c <= n_adapters} | {n_adapters})
    pairs = []
    for served in served_values:
        slots = sorted({c for c in GRID_COUNTS if c <= served} | ({served} if served < GRID_COUNTS[0] or served not in GRID_COUNTS and served <= GRID_COUNTS[-1] else set()))
        pairs += [(served, s) for s in slots]
    return pairs


def _feasible(profile: Profile, max_loras: int, max_lora_rank: int) -> bool:
    try:
        profile.kv.tokens(max_loras, max_lora_rank)
    except InfeasibleConfigError:
        return False
    return True


def score_candidates(
    mix: AdapterMix, profile: Profile, throughput_model: dict[str, Any], starvation_model: dict[str, Any],
    pairs: Sequence[tuple[int, int]],
) -> tuple[list[Candidate], list[dict[str, float]]]:
    """Predicted throughput and starvation probability of each pair that can start, and their feature rows."""
    rows, kept = [], []
    for served, max_loras in pairs:
        head = mix.head(served)
        rank = int(head.ranks.max())
        if not _feasible(profile, max_loras, rank):
            continue
        rows.append(config_features(head, max_loras, rank))
        kept.append((served, max_loras))
    if not rows:
        return [], []
    throughput = predict_target(throughput_model, as_matrix(rows, throughput_model["features"]))
    starved_p = predict(starvation_model, as_matrix(rows, starvation_model["features"]))
    return [
        Candidate(s, m, float(t), float(p), float(row["offered_tok_s"]))
        for (s, m), t, p, row in zip(kept, throughput, starved_p, rows, strict=True)
    ], rows


def add_cost_model_verdicts(candidates: Sequence[Candidate], workload: WorkloadSpec, profile: Profile,
                            max_wait_s: float | None) -> None:
    """Each candidate's mean wait for a place in the batch and the placement cost model's pressure
    (KV cache, token budget, late requests, adapter loads, the wait limit), at the check's default
    max_num_seqs and max_num_batched_tokens, those of the recommended command."""
    slots = sorted({c.max_loras for c in candidates})
    check = CostModelCheck(workload.lengths, max_wait_s=max_wait_s, slot_grid=slots)
    by_served: dict[int, dict[int, Any]] = {}
    for c in candidates:
        if c.served not in by_served:
            verdict = check.evaluate(workload.adapters[: c.served], profile)
            by_served[c.served] = {o.max_loras: o for o in verdict.options}
        option = by_served[c.served].get(c.max_loras)
        c.predicted_wait_s = option.wait_s if option is not None else float("inf")
        c.predicted_queue_s = option.queue_s if option is not None else float("inf")
        c.cost_model_pressure = option.strain if option is not None else float("inf")


def _refused(c: Candidate) -> bool:
    return c.cost_model_pressure > 1.0


def _refusal(c: Candidate, max_wait_s: float | None, short: bool = False) -> str:
    if max_wait_s is not None and c.predicted_wait_s > max_wait_s:
        if short:
            return f"wait {c.predicted_wait_s:.0f} s" if np.isfinite(c.predicted_wait_s) else "no steady state"
        return f"requests would wait over {max_wait_s:g} s for a place in the batch"
    if max_wait_s is not None and c.predicted_queue_s > max_wait_s and c.cost_model_pressure <= c.predicted_queue_s / max_wait_s:
        return f"KV queue {c.predicted_queue_s:.0f} s" if short else f"requests would queue over {max_wait_s:g} s for the KV cache"
    return "over capacity" if short else "over one GPU's capacity by the placement cost model (KV cache or token budget)"


def choose(candidates: Sequence[Candidate], max_starved_p: float = DEFAULT_MAX_STARVED_P) -> Candidate | None:
    """Highest predicted throughput among the candidates not predicted to starve and not refused by
    the cost model (when `add_cost_model_verdicts` ran); ties: fewer slots."""
    safe = [c for c in candidates if c.starved_probability < max_starved_p and not _refused(c)]
    if not safe:
        return None
    return max(safe, key=lambda c: (round(c.predicted_total_tok_s, 6), -c.max_loras, -c.served))


def vllm_command(model_id: str, adapter_ids: Sequence[str], max_loras: int, max_lora_rank: int,
                 adapter_dir: str = "./adapters") -> list[str]:
    """`vllm serve` with the recommended flags and the served adapters (paths under `adapter_dir`).
    max_num_seqs and max_num_batched_tokens as in the measurements the models were trained to match."""
    command = [
        "vllm", "serve", model_id, "--enable-lora",
        "--max-loras", str(max_loras), "--max-cpu-loras", str(len(adapter_ids)), "--max-lora-rank", str(max_lora_rank),
        "--max-num-seqs", "2048", "--max-num-batched-tokens", "2048", "--no-enable-prefix-caching",
        "--lora-modules",
    ]
    return command + [f"{a}={adapter_dir.rstrip('/')}/{a}" for a in adapter_ids]


def recommend(
    workload: WorkloadSpec,
    profile: str | Profile = "llama-3.1-8b-instruct",
    *,
    models: ModelSet | None = None,
    throughput_model: str | None = None,
    starvation_model: str | None = None,
    optimum_model: str | None = None,
    max_starved_p: float | None = None,
    max_wait_s: float | None = DEFAULT_MAX_WAIT_S,
    adapter_dir: str = "./adapters",
) -> Recommendation:
    """Recommend (served, max_loras) for `workload` on one GPU of `profile`. `max_wait_s`: the
    longest mean wait for a place in the batch accepted (None: the published rule alone)."""
    if max_wait_s is not None and not max_wait_s >= 0:
        raise InputError(f"--max-wait must be >= 0 seconds, got {max_wait_s:g}")
    if isinstance(profile, str):
        profile = load_profile(profile)
    if models is None:
        models = load_model_set(profile.name)
    if max_starved_p is None:
        max_starved_p = float(models.manifest.get("recommend", {}).get("max_starved_p", DEFAULT_MAX_STARVED_P))
    mix = workload_mix(workload, profile)
    ids = [a.id for a in workload.adapters]
    throughput_doc = models.model("total_tok_s", throughput_model)
    starvation_doc = models.model("starved", starvation_model)
    candidates, X = score_candidates(mix, profile, throughput_doc, starvation_doc, candidate_counts(len(ids)))
    if not candidates:
        raise InputError(
            f"no configuration of profile {profile.name} can start with max_lora_rank {int(mix.ranks.max())}"
        )
    if max_wait_s is not None:
        add_cost_model_verdicts(candidates, workload, profile, max_wait_s)
    best = choose(candidates, max_starved_p)
    notes = []
    if best is None:
        best = min(candidates, key=lambda c: (c.starved_probability >= max_starved_p, c.cost_model_pressure,
                                              c.starved_probability, c.served, c.max_loras))
        notes.append("every configuration is predicted to starve, or refused by the placement cost model (requests "
                     f"waiting over {max_wait_s:g} s, or over capacity): even the fewest adapters overload one GPU"
                     if max_wait_s is not None else
                     "every configuration is predicted to starve: even the fewest adapters overload one GPU")
    index = candidates.index(best)
    family = starvation_doc.get("family", starvation_doc["kind"])
    why = [(f"predicted not to starve at served {best.served}, max_loras {best.max_loras} "
            f"(P(starved) {best.starved_probability:.2f}, {family} model):")]
    why += ["  " + line for line in decision_path(starvation_doc, _row(starvation_doc, X[index]))]
    if max_wait_s is not None:
        why.append(f"accepted by the placement cost model: predicted mean wait for a place in the batch "
                   f"{best.predicted_wait_s:.1f} s and for the KV cache {best.predicted_queue_s:.1f} s "
                   f"(each at most {max_wait_s:g} s; --max-wait), within capacity"
                   if not _refused(best) else
                   f"the placement cost model refuses every configuration; this one the least ({_refusal(best, max_wait_s)})")

    # why not more adapters: the next served count up, at its best slot count
    bigger = [c for c in candidates if c.served > best.served]
    next_up = None
    if bigger:
        next_served = min(c.served for c in bigger)
        options = [c for c in bigger if c.served == next_served]
        c = min(options, key=lambda c: (c.starved_probability >= max_starved_p, _refused(c), c.starved_probability))
        if c.starved_probability >= max_starved_p:
            reason = "predicted to starve"
        elif _refused(c):
            reason = _refusal(c, max_wait_s)
        else:
            reason = "lower predicted throughput"
        next_up = {"served": c.served, "max_loras": c.max_loras, "starved_probability": c.starved_probability,
                   "predicted_total_tok_s": c.predicted_total_tok_s,
                   "predicted_wait_s": _finite_or_none(c.predicted_wait_s) if max_wait_s is not None else None,
                   "reason": reason}
        if _refused(c) and c.starved_probability < max_starved_p:
            each = "; ".join(f"max_loras {o.max_loras}: {_refusal(o, max_wait_s, short=True)}" for o in
                             sorted(options, key=lambda o: o.max_loras) if o.starved_probability < max_starved_p)
            why.append(f"not {c.served} adapters: the placement cost model refuses every max_loras predicted not to "
                       f"starve ({each})")
        if c.starved_probability >= max_starved_p:
            why.append(f"not {c.served} adapters: {reason} at every max_loras (best P(starved) {c.starved_probability:.2f} "
                       f"at max_loras {c.max_loras}):")
            why += ["  " + line for line in decision_path(starvation_doc, _row(starvation_doc, X[candidates.index(c)]))]

    pool = [workload_features(mix)]
    optimum: dict[str, Any] = {}
    for target in ("best_served", "best_max_loras", "best_total_tok_s"):
        doc = models.model(target, optimum_model)
        value = float(models.predict(target, pool, optimum_model)[0])
        optimum[target] = value
        optimum[f"{target}_family"] = doc.get("family", doc["kind"])
    snapped_served = _snap(optimum["best_served"])
    snapped_slots = _snap(optimum["best_max_loras"])
    optimum["served"] = min(snapped_served, len(ids))
    optimum["max_loras"] = min(snapped_slots, optimum["served"])
    served_doc = models.model("best_served", optimum_model)
    optimum["path"] = decision_path(served_doc, _row(served_doc, pool[0]))

    served_ids = ids[: best.served]
    rank = int(mix.head(best.served).ranks.max())
    return Recommendation(
        profile=profile.name,
        model_id=profile.model,
        adapters_given=len(ids),
        served=best.served,
        served_adapter_ids=served_ids,
        selection_rule="the first adapters in the order given",
        max_loras=best.max_loras,
        max_cpu_loras=best.served,
        max_lora_rank=rank,
        predicted_total_tok_s=best.predicted_total_tok_s,
        starved_probability=best.starved_probability,
        offered_tok_s=best.offered_tok_s,
        predicted_wait_s=_finite_or_none(best.predicted_wait_s) if max_wait_s is not None else None,
        max_wait_s=max_wait_s,
        models={
            "throughput": throughput_doc.get("family", "?"),
            "starvation": starvation_doc.get("family", "?"),
            "optimum": optimum["best_served_family"],
        },
        why=why,
        optimum_models=optimum,
        next_step_up=next_up,
        vllm_command=vllm_command(profile.model, served_ids, best.max_loras, rank, adapter_dir),
        candidates_scored=len(candidates),
        notes=notes,
    )


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _row(model: dict[str, Any], features: dict[str, float]) -> np.ndarray:
    return np.array([features[name] for name in model["features"]], dtype=np.float64)


def _snap(value: float) -> int:
    return int(min(GRID_COUNTS, key=lambda c: abs(c - value)))


# --- verification and refinement with the twin ------------------------------------------------


def _steps(served: int, max_loras: int, n_adapters: int) -> tuple[list[int], list[int]]:
    served_steps = sorted({c for c in GRID_COUNTS + SMALL_COUNTS if c <= n_adapters} | {n_adapters, served})
    slot_steps = sorted({c for c in GRID_COUNTS + SMALL_COUNTS if c <= n_adapters} | {max_loras})
    return served_steps, slot_steps


def _neighbours(served: int, max_loras: int, n_adapters: int, diagonal: bool = False) -> list[tuple[int, int]]:
    """The point, then served one step up and down, then slots one step up and down (max_loras
    never above served); with `diagonal`, also both at once (the 3 x 3 block around the point)."""
    served_steps, slot_steps = _steps(served, max_loras, n_adapters)
    i, j = served_steps.index(served), slot_steps.index(max_loras)
    moves = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
    if diagonal:
        moves += [(1, -1), (1, 1), (-1, -1), (-1, 1)]
    points = []
    for di, dj in moves:
        if 0 <= i + di < len(served_steps) and 0 <= j + dj < len(slot_steps):
            s = served_steps[i + di]
            points.append((s, min(slot_steps[j + dj], s)))
    return list(dict.fromkeys(points))


class TwinProbe:
    """Simulates (served, max_loras) points of one workload (the first `served` adapters), once each."""

    def __init__(self, workload: WorkloadSpec, profile: str | Profile, *, duration_s: float = 3600.0, seed: int = 0,
                 threshold: float = 0.1, client_max_waiting: int | None = None,
                 max_wait_s: float | None = DEFAULT_MAX_WAIT_S) -> None:
        self.workload = workload
        self.max_wait_s = max_wait_s
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.duration_s, self.seed, self.threshold = duration_s, seed, threshold
        self.client_max_waiting = client_max_waiting
        self.points: dict[tuple[int, int], dict[str, Any]] = {}

    def __call__(self, served: int, max_loras: int) -> dict[str, Any]:
        if (served, max_loras) in self.points:
            return self.points[(served, max_loras)]
        from loratwin.twin import ServerConfig, simulate

        w = self.workload
        head = WorkloadSpec(adapters=w.adapters[:served], lengths=w.lengths, arrival=w.arrival)
        rank = max(a.rank for a in head.adapters)
        point: dict[str, Any] = {"served": served, "max_loras": max_loras}
        try:
            result = simulate(head, ServerConfig(max_loras=max_loras, max_cpu_loras=served, max_lora_rank=rank,
                                                 max_num_seqs=2048, max_num_batched_tokens=2048,
                                                 client_max_waiting=self.client_max_waiting),
                              self.profile, duration_s=self.duration_s, seed=self.seed,
                              starvation_threshold=self.threshold)
        except InfeasibleConfigError as err:
            point.update(status="cannot start", reason=str(err), starved=None, total_tok_s=None)
        else:
            ratio = float(result.summary["throughput_over_offered"])
            longest = result.first_token_wait_s
            point.update(status="ok", total_tok_s=float(result.summary["total_tok_s"]), throughput_over_offered=ratio,
                         starved=bool(1.0 - ratio >= self.threshold), starved_adapters=len(result.starved_adapters),
                         wait_s=result.idle_start_ttft_s, mean_ttft_s=result.mean_ttft_s,
                         waits_too_long=bool(self.max_wait_s is not None and longest is not None
                                             and longest > self.max_wait_s))
        self.points[(served, max_loras)] = point
        return point


def apply_refinement(recommendation: Recommendation, refinement: dict[str, Any], workload: WorkloadSpec,
                     adapter_dir: str = "./adapters") -> Recommendation:
    """The recommendation moved to the twin's answer; the models' answer stays in `refinement`."""
    served, max_loras = refinement["served"], refinement["max_loras"]
    ids = [a.id for a in workload.adapters[:served]]
    rank = max(a.rank for a in workload.adapters[:served])
    moved = (served, max_loras) != (recommendation.served, recommendation.max_loras)
    refinement = refinement | {"models_answer": {"served": recommendation.served, "max_loras": recommendation.max_loras,
                                                 "predicted_total_tok_s": recommendation.predicted_total_tok_s}}
    changes: dict[str, Any] = {"refinement": refinement, "source": "models, refined with the twin"}
    if moved:
        changes.update(served=served, max_loras=max_loras, max_cpu_loras=served, max_lora_rank=rank,
                       served_adapter_ids=ids, vllm_command=vllm_command(recommendation.model_id, ids, max_loras, rank, adapter_dir))
    from dataclasses import replace

    return replace(recommendation, **changes)


def _usable(point: dict[str, Any]) -> bool:
    """Not starved, and requests do not wait too long for a place in the batch."""
    return point["status"] == "ok" and not point["starved"] and not point["waits_too_long"]


def verify(
    recommendation: Recommendation,
    workload: WorkloadSpec,
    profile: str | Profile,
    *,
    duration_s: float = 3600.0,
    seed: int = 0,
    threshold: float = 0.1,
    client_max_waiting: int | None = None,
    probe: TwinProbe | None = None,
    max_wait_s: float | None = DEFAULT_MAX_WAIT_S,
) -> dict[str, Any]:
    """Simulate the recommendation and its neighbours with the twin; say whether it holds: the
    recommended point does not starve, its requests wait at most `max_wait_s` for a place in the
    batch, and no neighbour that does neither beats its throughput by more than 1%."""
    probe = probe or TwinProbe(workload, profile, duration_s=duration_s, seed=seed, threshold=threshold,
                               client_max_waiting=client_max_waiting, max_wait_s=max_wait_s)
    here = (recommendation.served, recommendation.max_loras)
    points = [probe(*p) | {"recommended": p == here}
              for p in _neighbours(*here, len(workload.adapters))]
    own = points[0]
    usable = [p for p in points[1:] if _usable(p)]
    better = [p for p in usable if own["status"] != "ok" or p["total_tok_s"] > 1.01 * own["total_tok_s"]]
    alternative = max(usable, key=lambda p: p["total_tok_s"], default=None)
    if own["status"] != "ok":
        verdict, holds = "the recommended configuration cannot start", False
    elif own["starved"]:
        verdict, holds = "the twin says the recommendation starves", False
    elif own["waits_too_long"]:
        verdict, holds = (f"the twin says requests wait too long for their first token (mean {own['mean_ttft_s']:.0f} s; "
                          f"{own['wait_s'] or 0:.0f} s when their adapter was idle; over {probe.max_wait_s:g} s)"), False
    elif better:
        verdict, holds = "conservative: a neighbour does better without starving", False
        alternative = max(better, key=lambda p: p["total_tok_s"])
    else:
        verdict, holds, alternative = "holds: not starved, and no neighbour that does not starve does better", True, None
        if probe.max_wait_s is not None:
            verdict = (f"holds: not starved, requests wait at most {probe.max_wait_s:g} s for their first token, "
                       "and no such neighbour does better")
    if alternative is not None:
        verdict += (f"; served {alternative['served']}, max_loras {alternative['max_loras']} does not starve "
                    f"({alternative['total_tok_s']:.0f} tok/s)")
    return {"holds": holds, "verdict": verdict, "duration_s": probe.duration_s, "seed": probe.seed, "points": points}


def refine(
    recommendation: Recommendation,
    workload: WorkloadSpec,
    profile: str | Profile,
    *,
    duration_s: float = 3600.0,
    seed: int = 0,
    threshold: float = 0.1,
    client_max_waiting: int | None = None,
    max_steps: int = 8,
    max_wait_s: float | None = DEFAULT_MAX_WAIT_S,
) -> dict[str, Any]:
    """Local search with the twin from the models' answer: move to the point of the 3 x 3 block
    around it (served and max_loras one grid step either way) with the highest simulated throughput
    that does not starve and whose requests wait at most `max_wait_s` for a place in the batch
    (from an unusable point, one served step down when no neighbour is usable) until the point
    itself is best. Returns the path and the final point."""
    probe = TwinProbe(workload, profile, duration_s=duration_s, seed=seed, threshold=threshold,
                      client_max_waiting=client_max_waiting, max_wait_s=max_wait_s)
    n = len(workload.adapters)
    current = (recommendation.served, recommendation.max_loras)
    path = [current]
    for _ in range(max_steps):
        points = [probe(*p) for p in _neighbours(*current, n, diagonal=True)]
        here, usable = points[0], [p for p in points if _usable(p)]
        if usable:
            best = max(usable, key=lambda p: p["total_tok_s"])
            # stay unless a neighbour is clearly better: simulated noise should not move the answer
            if _usable(here) and best["total_tok_s"] <= 1.002 * here["total_tok_s"]:
                break
            nxt = (best["served"], best["max_loras"])
        else:
            lower = [p for p in points[1:] if p["served"] < current[0]]
            if not lower:
                break
            nxt = (lower[0]["served"], lower[0]["max_loras"])
        if nxt in path:
            break
        current = nxt
        path.append(current)
    final = probe(*current)
    return {"served": current[0], "max_loras": current[1], "point": final, "path": [list(p) for p in path],
            "simulations": len(probe.points), "duration_s": duration_s, "seed": seed,
            "holds": _usable(final)}
