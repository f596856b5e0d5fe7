"""Fit a profile on a lab's runs (`loratwin profile fit`): the twin in the loop, every step term free.

A lab has no isolated decode or LoRA-overhead measurements, only served runs (`vllm bench serve`
against `vllm serve`, read into the runs table by `loratwin profile import`). So the start profile
(normally the derived one: memory model and roofline, `loratwin profile derive`) gives what the runs
cannot: adapter load times, the scheduler overhead, KV capacity where no run logged it, and the value
the fit falls back on for what the runs cannot tell apart (the weak pull of `PRIOR_WEIGHT`). The
runs then set:

- KV capacity at each (max_loras, max_lora_rank) where a run logged the server's "GPU KV cache
  size" (`kv_cache_tokens`); elsewhere the start profile's, moved by the logged errors (a memory
  model's error is mostly bytes it missed: the same number of tokens at neighbouring points), see
  `kv_with_measurements`; a run that did not start (`oom_at_start`) marks its point infeasible;
- the share of requested output tokens the model generates (`calibrate.fit_output_ratio`);
- every additive step-time term, base and LoRA (`twin_fit.fit_step_time_on_runs` with
  FIT_ALL_TERMS).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from loratwin.errors import InputError
from loratwin.profiles.kv_capacity import MAX_KV_TOKENS, MIN_KV_BLOCKS
from loratwin.profiles.model import GenerationModel, KVCapacityModel, Profile
from loratwin.validate.calibrate import fit_output_ratio
from loratwin.validate.runs import RealRun
from loratwin.validate.twin_fit import FIT_ALL_TERMS, FitRound, fit_step_time_on_runs

# Columns a runs table needs for a fit, beyond the configuration's.
FIT_COLUMNS = ("total_tok_s", "mean_itl_ms")
# Weight of the pull towards the start profile's step terms, against the runs' equations (each in
# relative error): small enough that anything the runs determine is theirs.
PRIOR_WEIGHT = 0.05
DEFAULT_ROUNDS = 8


def model_key(name: str) -> str:
    """How a model is matched between the flags and a runs table: the last part of a Hugging Face id
    or path (the folder of a config.json), case ignored."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if len(parts) > 1 and parts[-1].lower() == "config.json":
        parts.pop()
    return parts[-1].lower() if parts else ""


def usable(run: RealRun) -> bool:
    """A run the step time can be fitted on: it ran, with throughput and ITL measured."""
    m = run.measured
    return run.has_metrics and (m.get("total_tok_s") or 0) > 0 and (m.get("mean_itl_ms") or 0) > 0


def select_fit_runs(runs: Sequence[RealRun], model: str, source: str) -> list[RealRun]:
    """The runs of `model` in a runs table (those that ran or failed to start); refuses a table with
    none of them, or none usable for the fit."""
    ours = [r for r in runs if model_key(r.model) == model_key(model)]
    if not ours:
        held = sorted({r.model for r in runs})
        what = f"it holds runs of {', '.join(held)}" if held else "it holds no runs"
        raise InputError(f"{source}: no runs of model {model!r} ({what}); --runs-model names the model as the file does")
    chosen = [r for r in ours if r.start_known]
    if not any(usable(r) for r in chosen):
        raise InputError(
            f"{source}: none of the {len(ours)} runs of model {model!r} can be fitted on: a run needs status ok "
            "and a measured total_tok_s and mean_itl_ms above 0"
        )
    return chosen


def kv_with_measurements(kv: KVCapacityModel, runs: Sequence[RealRun]) -> tuple[KVCapacityModel, int]:
    """`kv` with the capacities the runs logged (median per point) put in its table, and the points
    where a run did not start (and none started) marked infeasible. What the logs say of the rest:
    with a memory model, its non-torch bytes move by the median error at the logged points (the bytes
    it missed); without one, the table's other points of each rank move by the error at the nearest
    logged point (ranks without one: by the median error). Also returns the number of logged points."""
    logged: dict[tuple[int, int], list[float]] = {}
    failed: set[tuple[int, int]] = set()
    for r in runs:
        tokens = r.measured.get("kv_cache_tokens")
        if r.started and tokens is not None:
            if not MIN_KV_BLOCKS * kv.block_size <= tokens <= MAX_KV_TOKENS:
                raise InputError(f"run {r.run_id}: kv_cache_tokens {tokens:g} is not a KV cache size (from "
                                 f"{MIN_KV_BLOCKS} blocks of {kv.block_size} tokens to {MAX_KV_TOKENS:,} tokens)")
            logged.setdefault((r.max_lora_rank, r.max_loras), []).append(tokens)
        elif not r.started and r.start_known:
            failed.add((r.max_lora_rank, r.max_loras))
    measured = {point: int(round(float(np.median(v)))) for point, v in logged.items()}
    if not measured and not failed:
        return kv, 0
    errors: dict[int, dict[int, int]] = {}
    for (rank, loras), tokens in measured.items():
        derived = _derived_tokens(kv, loras, rank)
        if derived is not None:
            errors.setdefault(rank, {})[loras] = tokens - derived
    every_error = [e for by_loras in errors.values() for e in by_loras.values()]
    default_error = int(np.median(every_error)) if every_error else 0
    table = {rank: dict(points) for rank, points in (kv.capacity_tokens or {}).items()}
    reasons = {rank: dict(points) for rank, points in kv.infeasible_reason.items()}
    memory = kv.memory
    if memory is not None:
        missed = default_error * memory.architecture.kv_bytes_per_token
        memory = memory.model_copy(update={"non_torch_bytes": max(0, memory.non_torch_bytes - missed)})
    else:
        fewest = MIN_KV_BLOCKS * kv.block_size
        for rank, points in table.items():
            for loras, tokens in points.items():
                if tokens is not None:
                    moved = tokens + _nearest(errors.get(rank), loras, default_error)
                    points[loras] = moved if moved >= fewest else None
                    if moved < fewest:
                        reasons.setdefault(rank, {})[loras] = "no memory left for the KV cache (corrected by the runs)"
    for rank, loras in failed - set(measured):
        table.setdefault(rank, {})[loras] = None
        reasons.setdefault(rank, {})[loras] = "did not start in the lab runs (oom at start)"
    for (rank, loras), tokens in measured.items():
        table.setdefault(rank, {})[loras] = tokens
        reasons.get(rank, {}).pop(loras, None)
    # built anew: the model caches what it derives from its memory section
    return KVCapacityModel(
        block_size=kv.block_size,
        measured_max_num_seqs=kv.measured_max_num_seqs,
        capacity_tokens={k: dict(sorted(v.items())) for k, v in sorted(table.items())},
        infeasible_reason={k: dict(sorted(v.items())) for k, v in sorted(reasons.items()) if v},
        memory=memory,
    ), len(measured)


def _derived_tokens(kv: KVCapacityModel, max_loras: int, rank: int) -> int | None:
    try:
        return kv.tokens(max_loras, rank)
    except InputError:  # also InfeasibleConfigError: the start profile has no capacity there
        return None


def _nearest(errors: dict[int, int] | None, loras: int, default: int) -> int:
    if not errors:
        return default
    points = sorted(errors)
    i = bisect.bisect_left(points, loras)
    near = [p for p in points[max(0, i - 1): i + 1]]
    return errors[min(near, key=lambda p: (abs(p - loras), p))]


@dataclass
class ProfileFit:
    """A fitted profile, the rounds of its fit and what it was fitted on."""

    profile: Profile
    history: list[FitRound]
    fitted_runs: int
    kv_points: int

    @property
    def best(self) -> FitRound:
        return min(self.history, key=lambda r: r.score)

    def summary(self) -> dict:
        best = self.best
        return {
            "profile": self.profile.name,
            "fitted_runs": self.fitted_runs,
            "kv_points_from_runs": self.kv_points,
            "throughput_error_pct": round(best.throughput_error, 3),
            "itl_error_pct": round(best.itl_error, 3),
            "starvation_agreement": round(best.starvation_agreement, 4),
            "rounds": [
                {"throughput_error_pct": round(r.throughput_error, 3), "itl_error_pct": round(r.itl_error, 3),
                 "starvation_agreement": round(r.starvation_agreement, 4)}
                for r in self.history
            ],
            "step_time": self.profile.step_time.model_dump(),
        }


def fit_profile(
    start: Profile,
    runs: Sequence[RealRun],
    *,
    name: str | None = None,
    source: str = "",
    rounds: int = DEFAULT_ROUNDS,
    seeds: Sequence[int] = (0,),
    workers: int | None = None,
    duration_s: float | None = None,
    prior_weight: float = PRIOR_WEIGHT,
    server: dict[str, int] | None = None,
    on_round: Callable[[int, FitRound], None] | None = None,
    on_replay_done: Callable[[], None] | None = None,
) -> ProfileFit:
    """Fit `start` on `runs` (those of its model, see `select_fit_runs`): KV capacity from the runs'
    logs, output ratio, then every step term with the twin in the loop. `server`: the flags the runs
    were served with (max_num_seqs, max_num_batched_tokens). Each run is replayed over `duration_s`, else
    its own `configured_time_s`, else an hour. `source` says in the profile what it was fitted on."""
    if rounds < 1:
        raise InputError(f"--rounds must be >= 1, got {rounds}")
    fit_runs = [r for r in runs if usable(r)]
    if not fit_runs:
        raise InputError("no usable runs: a run needs status ok and a measured total_tok_s and mean_itl_ms above 0")
    kv, kv_points = kv_with_measurements(start.kv, runs)
    profile = start.model_copy(update={
        "name": name or start.name,
        "fitted": "calibrated",
        "source": source or f"{start.source}; fitted on {len(fit_runs)} runs",
        "kv": kv,
        "generation": GenerationModel(output_tokens_ratio=fit_output_ratio(fit_runs)),
    })
    fitted, history = fit_step_time_on_runs(
        profile, fit_runs, rounds=rounds, seeds=seeds, workers=workers, duration_s=duration_s,
        on_round=on_round, on_replay_done=on_replay_done, free=FIT_ALL_TERMS, prior_weight=prior_weight,
        server=server,
    )
    return ProfileFit(profile=fitted, history=history, fitted_runs=len(fit_runs), kv_points=kv_points)


def fit_header(fit: ProfileFit, command: str, runs_source: str, started_from: str) -> str:
    """The comment lines a fitted profile's YAML starts with: how it was made and its fit errors."""
    best = fit.best
    return (
        f"# Written by: {command}\n"
        f"# Started from: {started_from}\n"
        f"# Fitted on {fit.fitted_runs} runs of {runs_source} ({fit.kv_points} KV capacities logged by them): "
        f"throughput err {best.throughput_error:.2f}%, ITL err {best.itl_error:.2f}%, "
        f"starvation agreement {100 * best.starvation_agreement:.1f}% (half-SMAPE, on the fitted runs)\n"
    )
