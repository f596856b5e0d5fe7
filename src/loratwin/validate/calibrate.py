"""Fit a profile from measurements.

Each term of the cost model is fitted on the measurements that isolate it:
- KV capacity and start failures: the server's "GPU KV cache size" per (max_loras, max_lora_rank)
  (`kv_capacity.csv`);
- adapter loads: the mean CPU->GPU and disk->CPU load times (`adapter_loading.csv`);
- scheduler overhead: least squares on the scheduler-time table (`scheduler_overhead.csv`);
- base-model step time (no adapter): least squares of decode ITL on the running batch and its
  context (`decode_latency.csv`);
- the share of requested output tokens the model generates: the realised output lengths of the
  unstarved real runs;
- the LoRA and prefill terms of the step time: on real multi-LoRA runs, with the twin in the loop
  (`twin_fit.py`), since no isolated measurement of them at realistic batches exists; with
  `lora_overhead_weight` > 0, also on the LoRA-overhead runs (`lora_overhead.csv`: max_loras 300,
  1-300 adapters in use, which the real runs rarely reach), each weighing like that many runs
  (`lora_overhead.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from loratwin.errors import InputError
from loratwin.profiles.kv_capacity import KVTokens, Rank, Slots
from loratwin.profiles.model import (
    AdapterLoadModel,
    GenerationModel,
    KVCapacityModel,
    PlacementModel,
    Profile,
    SchedulerOverheadModel,
    StepTimeModel,
    TermMs,
)
from loratwin.validate.calibrate_files import NonNegative, PositiveMs, message, number, rows_of
from loratwin.validate.lora_overhead import LORA_OVERHEAD_FILE, read_lora_overhead
from loratwin.validate.runs import RealRun
from loratwin.validate.twin_fit import BASE_TERMS, RUN_TERMS, FitRound, fit_step_time_on_runs
from loratwin.workload.length_tables import available_tables

__all__ = [
    "BASE_TERMS", "RUN_TERMS", "FitRound", "calibrate", "fit_adapter_loads", "fit_base_step", "fit_kv_capacity",
    "fit_output_ratio", "fit_scheduler_overhead", "fit_step_time_on_runs",
]

# vLLM's KV block size on the measured servers
KV_BLOCK_SIZE = 16


# The columns each calibration file needs (model-specific files also need `model`).
KV_COLUMNS = ("model", "max_loras", "max_lora_rank", "max_num_seqs", "kv_cache_tokens", "feasible")
LOAD_COLUMNS = ("model", "status", "max_lora_rank", "adapter_rank", "load_ms_mean", "disk_load_ms_mean")
SCHEDULER_COLUMNS = ("gpu_loras", "cpu_loras", "avg_batch_size", "avg_waiting_queue", "scheduling_time_per_step_ms")
DECODE_COLUMNS = ("model", "status", "experiment_set", "mean_running", "input_tokens", "output_tokens", "mean_itl_ms")

def fit_kv_capacity(path: Path, model: str) -> KVCapacityModel:
    capacity: dict[int, dict[int, int | None]] = {}
    reasons: dict[int, dict[int, str]] = {}
    rows = rows_of(path, KV_COLUMNS, model)
    for row in rows:
        rank, loras = number(row, "max_lora_rank", path, Rank), number(row, "max_loras", path, Slots)
        if row[1].get("feasible") == "1":
            tokens = number(row, "kv_cache_tokens", path, KVTokens)
            try:  # the profile's own rules on one measured size (two KV blocks at least)
                KVCapacityModel(block_size=KV_BLOCK_SIZE, capacity_tokens={rank: {loras: tokens}})
            except ValidationError as err:
                raise InputError(f"{path} line {row[0]}: kv_cache_tokens: {message(err)}") from None
            capacity.setdefault(rank, {})[loras] = tokens
        else:
            capacity.setdefault(rank, {})[loras] = None
            reasons.setdefault(rank, {})[loras] = (row[1].get("failure_detail") or "out of memory").replace("_", " ")
    seqs = {number(r, "max_num_seqs", path, Slots) for r in rows}
    return KVCapacityModel(
        block_size=KV_BLOCK_SIZE,
        measured_max_num_seqs=max(seqs),
        capacity_tokens={k: dict(sorted(v.items())) for k, v in sorted(capacity.items())},
        infeasible_reason={k: dict(sorted(v.items())) for k, v in sorted(reasons.items())},
    )


def fit_adapter_loads(path: Path, model: str) -> AdapterLoadModel:
    cpu_to_gpu: dict[int, dict[int, float]] = {}
    disk: dict[int, dict[int, float]] = {}
    for row in rows_of(path, LOAD_COLUMNS, model):
        if row[1].get("status") != "ok":
            continue
        max_rank, rank = number(row, "max_lora_rank", path, Rank), number(row, "adapter_rank", path, Rank)
        cpu_to_gpu.setdefault(max_rank, {})[rank] = round(number(row, "load_ms_mean", path, TermMs), 6)
        disk.setdefault(max_rank, {})[rank] = round(number(row, "disk_load_ms_mean", path, TermMs), 6)
    if not cpu_to_gpu:
        raise InputError(f"{path}: no rows of model {model!r} with status ok")
    return AdapterLoadModel(
        cpu_to_gpu_ms={k: dict(sorted(v.items())) for k, v in sorted(cpu_to_gpu.items())},
        disk_to_cpu_ms={k: dict(sorted(v.items())) for k, v in sorted(disk.items())},
    )


def fit_scheduler_overhead(path: Path) -> SchedulerOverheadModel:
    """Least squares of the scheduler time per step on running, waiting and waiting x slot share."""
    rows = rows_of(path, SCHEDULER_COLUMNS)
    b = np.array([number(r, "avg_batch_size", path, NonNegative) for r in rows])
    w = np.array([number(r, "avg_waiting_queue", path, NonNegative) for r in rows])
    share = np.array([number(r, "gpu_loras", path, Slots) / number(r, "cpu_loras", path, Slots) for r in rows])
    y = np.array([number(r, "scheduling_time_per_step_ms", path, TermMs) for r in rows])
    x = np.column_stack([np.ones_like(b), b, w, w * share])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return SchedulerOverheadModel(
        intercept_ms=round(float(coef[0]), 9),
        per_running_ms=round(float(coef[1]), 12),
        per_waiting_ms=round(float(coef[2]), 12),
        per_waiting_slot_share_ms=round(float(coef[3]), 12),
    )


def fit_base_step(path: Path, model: str) -> dict[str, float]:
    """Base-model decode step: ITL = base + per_seq * N + per_context_token * K, non-negative, where
    N is the mean running batch and K its mean context (prompt + half the output per request)."""
    from scipy.optimize import nnls

    rows = [r for r in rows_of(path, DECODE_COLUMNS, model)
            if r[1].get("status") == "ok" and r[1].get("experiment_set") == "default_latency_output"]
    if len(rows) < 3:
        raise InputError(f"{path}: need at least 3 ok default_latency_output rows for {model}")
    n = np.array([number(r, "mean_running", path, NonNegative) for r in rows])
    context = n * np.array([number(r, "input_tokens", path, NonNegative)
                            + number(r, "output_tokens", path, NonNegative) / 2 for r in rows])
    y = np.array([number(r, "mean_itl_ms", path, PositiveMs) for r in rows])
    x = np.column_stack([np.ones_like(n), n, context])
    coef, _ = nnls(x / y[:, None], np.ones_like(y))  # relative error
    return {name: round(float(c), 9) for name, c in zip(BASE_TERMS, coef, strict=True)}


def fit_output_ratio(runs: Sequence[RealRun]) -> float:
    """Median share of the requested output tokens that completed requests generated (unstarved runs)."""
    ratios = []
    for run in runs:
        m = run.measured
        if run.has_metrics and run.starved is False and m.get("completed") and m.get("total_output_tokens") and m.get("pool_mean_output_tokens"):
            ratios.append(m["total_output_tokens"] / m["completed"] / m["pool_mean_output_tokens"])
    if not ratios:
        return 1.0
    return round(min(1.0, float(np.median(ratios))), 4)


def calibrate(
    model: str,
    calibration_dir: Path,
    runs: Sequence[RealRun] | None = None,
    *,
    name: str | None = None,
    gpu: str = "unknown GPU",
    model_id: str | None = None,
    rounds: int = 4,
    seeds: Sequence[int] = (0,),
    workers: int | None = None,
    on_round: Callable[[int, FitRound], None] | None = None,
    on_replay_done: Callable[[], None] | None = None,
    lora_overhead_weight: float = 0.0,
) -> tuple[Profile, list[FitRound]]:
    """A profile for `model` from the calibration files in `calibration_dir` and, if given, real
    runs of that model (used for the output ratio and the LoRA and prefill step terms). With
    `lora_overhead_weight` > 0 (and runs), the restricted-adapter runs of lora_overhead.csv join the
    LoRA terms' fit, each weighing like that many runs."""
    if lora_overhead_weight < 0 or not math.isfinite(lora_overhead_weight):
        raise InputError(f"lora_overhead_weight must be a finite number >= 0, got {lora_overhead_weight!r}")
    base = fit_base_step(calibration_dir / "decode_latency.csv", model)
    fit_runs = [r for r in runs or () if r.model == model]
    profile = Profile(
        name=name or model,
        model=model_id or model,
        gpu=gpu,
        engine="vLLM 0.8.5, V1 engine, prefix caching off, max_num_batched_tokens 2048",
        source=f"loratwin calibrate on {calibration_dir}" + (f" and {len(fit_runs)} real runs" if fit_runs else ""),
        fitted="calibrated",
        tokenizer=model if model in available_tables() else None,
        step_time=StepTimeModel(**base),
        scheduler_overhead=fit_scheduler_overhead(calibration_dir / "scheduler_overhead.csv"),
        adapter_load=fit_adapter_loads(calibration_dir / "adapter_loading.csv", model),
        kv=fit_kv_capacity(calibration_dir / "kv_capacity.csv", model),
        generation=GenerationModel(output_tokens_ratio=fit_output_ratio(fit_runs)),
        # fitted on the twin, not on measurements: carried over as they are (see its provenance)
        placement=PlacementModel(),
    )
    if not fit_runs:
        return profile, []
    extra = None
    if lora_overhead_weight > 0:
        extra = read_lora_overhead(calibration_dir / LORA_OVERHEAD_FILE, model).equations(lora_overhead_weight)
    return fit_step_time_on_runs(
        profile, fit_runs, rounds=rounds, seeds=seeds, workers=workers,
        on_round=on_round, on_replay_done=on_replay_done, extra=extra,
    )
