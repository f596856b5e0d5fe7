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
  (`twin_fit.py`), since no isolated measurement of them at realistic batches exists.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from loratwin.errors import InputError
from loratwin.profiles.model import (
    AdapterLoadModel,
    GenerationModel,
    KVCapacityModel,
    PlacementModel,
    Profile,
    SchedulerOverheadModel,
    StepTimeModel,
)
from loratwin.textfile import read_user_text
from loratwin.validate.runs import RealRun
from loratwin.validate.twin_fit import BASE_TERMS, RUN_TERMS, FitRound, fit_step_time_on_runs
from loratwin.workload.length_tables import available_tables

__all__ = [
    "BASE_TERMS", "RUN_TERMS", "FitRound", "calibrate", "fit_adapter_loads", "fit_base_step", "fit_kv_capacity",
    "fit_output_ratio", "fit_scheduler_overhead", "fit_step_time_on_runs",
]


def _rows(path: Path, model: str | None = None) -> list[dict[str, str]]:
    text = read_user_text(path, f"a calibration file ({path.name}, CSV with a header row)")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except csv.Error as err:
        raise InputError(f"{path} line {reader.line_num}: unreadable CSV ({err})") from None
    if model is not None:
        rows = [r for r in rows if r.get("model") == model]
        if not rows:
            raise InputError(f"{path}: no rows for model {model!r}")
    return rows


def _number(row: dict[str, str], name: str, path: Path) -> float:
    try:
        value = float(row[name])
    except (KeyError, TypeError, ValueError):  # TypeError: a short row leaves the column None
        raise InputError(f"{path}: column {name!r} missing or not a number ({row.get(name)!r})") from None
    if not math.isfinite(value):
        raise InputError(f"{path}: column {name!r} must be a finite number, got {row[name]!r}")
    return value


def fit_kv_capacity(path: Path, model: str) -> KVCapacityModel:
    capacity: dict[int, dict[int, int | None]] = {}
    reasons: dict[int, dict[int, str]] = {}
    for row in _rows(path, model):
        rank, loras = int(_number(row, "max_lora_rank", path)), int(_number(row, "max_loras", path))
        if row.get("feasible") == "1":
            capacity.setdefault(rank, {})[loras] = int(_number(row, "kv_cache_tokens", path))
        else:
            capacity.setdefault(rank, {})[loras] = None
            reasons.setdefault(rank, {})[loras] = (row.get("failure_detail") or "out of memory").replace("_", " ")
    seqs = {int(_number(r, "max_num_seqs", path)) for r in _rows(path, model)}
    return KVCapacityModel(
        block_size=16,
        measured_max_num_seqs=max(seqs),
        capacity_tokens={k: dict(sorted(v.items())) for k, v in sorted(capacity.items())},
        infeasible_reason={k: dict(sorted(v.items())) for k, v in sorted(reasons.items())},
    )


def fit_adapter_loads(path: Path, model: str) -> AdapterLoadModel:
    cpu_to_gpu: dict[int, dict[int, float]] = {}
    disk: dict[int, dict[int, float]] = {}
    for row in _rows(path, model):
        if row.get("status") != "ok":
            continue
        max_rank, rank = int(_number(row, "max_lora_rank", path)), int(_number(row, "adapter_rank", path))
        cpu_to_gpu.setdefault(max_rank, {})[rank] = round(_number(row, "load_ms_mean", path), 6)
        disk.setdefault(max_rank, {})[rank] = round(_number(row, "disk_load_ms_mean", path), 6)
    return AdapterLoadModel(
        cpu_to_gpu_ms={k: dict(sorted(v.items())) for k, v in sorted(cpu_to_gpu.items())},
        disk_to_cpu_ms={k: dict(sorted(v.items())) for k, v in sorted(disk.items())},
    )


def fit_scheduler_overhead(path: Path) -> SchedulerOverheadModel:
    """Least squares of the scheduler time per step on running, waiting and waiting x slot share."""
    rows = _rows(path)
    b = np.array([_number(r, "avg_batch_size", path) for r in rows])
    w = np.array([_number(r, "avg_waiting_queue", path) for r in rows])
    share = np.array([_number(r, "gpu_loras", path) / _number(r, "cpu_loras", path) for r in rows])
    y = np.array([_number(r, "scheduling_time_per_step_ms", path) for r in rows])
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

    rows = [r for r in _rows(path, model) if r.get("status") == "ok" and r.get("experiment_set") == "default_latency_output"]
    if len(rows) < 3:
        raise InputError(f"{path}: need at least 3 ok default_latency_output rows for {model}")
    n = np.array([_number(r, "mean_running", path) for r in rows])
    context = n * np.array([_number(r, "input_tokens", path) + _number(r, "output_tokens", path) / 2 for r in rows])
    y = np.array([_number(r, "mean_itl_ms", path) for r in rows])
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
) -> tuple[Profile, list[FitRound]]:
    """A profile for `model` from the calibration files in `calibration_dir` and, if given, real
    runs of that model (used for the output ratio and the LoRA and prefill step terms)."""
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
    return fit_step_time_on_runs(
        profile, fit_runs, rounds=rounds, seeds=seeds, workers=workers,
        on_round=on_round, on_replay_done=on_replay_done,
    )
