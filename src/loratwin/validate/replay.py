"""Replay real runs through the twin, in parallel, each with a few seeds."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.profiles import Profile
from loratwin.twin import simulate
from loratwin.validate.runs import LATENCY_METRICS, RealRun, run_requests, run_server, run_workload

# The reference runs' benchmark client saturated near this many waiting requests.
REFERENCE_CLIENT_CAP = 25_500
# The benchmark window of a run whose runs file does not say (`configured_time_s`): the reference runs' hour.
DEFAULT_DURATION_S = 3600.0

# Per-step terms of the step-time model, in the order of STEP_TERM_FIELDS (profile field names).
STEP_TERM_FIELDS = (
    "base_ms", "per_seq_ms", "per_prefill_token_ms", "per_context_token_ms", "lora_step_ms",
    "lora_per_rank_ms", "lora_per_slot_ms", "lora_per_adapter_ms", "lora_per_seq_per_slot_ms",
    "lora_per_prefill_token_per_slot_ms",
)


def step_terms(steps: dict[str, np.ndarray], max_loras: int, max_lora_rank: int) -> np.ndarray:
    """Per-step values multiplying each additive coefficient of the step-time model (rows: terms)."""
    n = steps["batch"].astype(np.float64)
    p = steps["prefill_tokens"].astype(np.float64)
    a = steps["adapters"].astype(np.float64)
    with_lora = (a > 0).astype(np.float64)
    return np.stack([
        np.ones_like(n), n, p, steps["context_tokens"].astype(np.float64),
        with_lora, with_lora * max_lora_rank, with_lora * max_loras, a, n * max_loras, with_lora * p * max_loras,
    ])


@dataclass
class ReplayResult:
    """The twin's prediction for one real run, averaged over seeds."""

    run: RealRun
    started: bool
    failure: str | None = None
    seeds: int = 0
    total_tok_s: float | None = None
    # one field per name in LATENCY_METRICS (a test holds them equal)
    mean_ttft_ms: float | None = None
    median_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    mean_itl_ms: float | None = None
    median_itl_ms: float | None = None
    p99_itl_ms: float | None = None
    mean_tpot_ms: float | None = None
    throughput_over_offered: float | None = None
    starved: bool | None = None
    # for calibration: mean step terms weighted by tokens emitted and by step, the matching
    # mean overhead (loads + scheduler) in ms, and the number of steps (means over seeds)
    terms_per_token: np.ndarray | None = field(default=None, repr=False)
    terms_per_step: np.ndarray | None = field(default=None, repr=False)
    overhead_per_token_ms: float | None = None
    overhead_per_step_ms: float | None = None
    steps: float | None = None
    # the twin's mean ITL as the client sees it over the one its steps make (tokens delivered
    # together after a metrics scrape: twin.delivery); the step-time fit divides the measured ITL by it
    itl_delivery_factor: float = 1.0
    duration_s: float = DEFAULT_DURATION_S  # the window the run was replayed over


def _replay_one(task: tuple[RealRun, Profile, int, int | None, float, float, dict[str, int]]) -> dict:
    run, profile, seed, cap, duration_s, threshold, flags = task
    workload = run_workload(run, seed)
    try:
        result = simulate(
            workload, run_server(run, cap, **flags), profile,
            duration_s=duration_s, seed=seed, starvation_threshold=threshold,
            requests=run_requests(run, workload, profile, duration_s, seed), outputs_requested=True,
        )
    except InfeasibleConfigError as exc:
        return {"started": False, "failure": str(exc)}
    s, steps = result.summary, result.steps
    terms = step_terms(steps, run.max_loras, run.max_lora_rank)
    weight = steps["batch"].astype(np.float64)
    overhead_ms = steps["overhead_s"] * 1000
    return {
        "started": True,
        "total_tok_s": s["total_tok_s"],
        **{name: s[summary_key(name)] for name in LATENCY_METRICS},
        "throughput_over_offered": s["throughput_over_offered"],
        "terms_per_token": terms @ weight / weight.sum(),
        "terms_per_step": terms.mean(axis=1),
        "overhead_per_token_ms": float(overhead_ms @ weight / weight.sum()),
        "overhead_per_step_ms": float(overhead_ms.mean()),
        "steps": float(len(weight)),
        "itl_delivery_factor": (s["mean_itl_ms"] / s["engine_mean_itl_ms"]
                                if s.get("engine_mean_itl_ms") and s["mean_itl_ms"] else 1.0),
    }


def summary_key(metric: str) -> str:
    """The twin's run-summary key of a runs-file latency column (the summary says p50 for median)."""
    return metric.replace("median_", "p50_")


def run_duration(run: RealRun) -> float:
    """The run's benchmark window in seconds: its `configured_time_s`, else DEFAULT_DURATION_S."""
    return run.measured.get("configured_time_s") or DEFAULT_DURATION_S


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def check_replay_options(seeds: Sequence[int], workers: int | None, client_max_waiting: int | None) -> None:
    """Refuse options `replay_runs` cannot use, before any work (or progress display) starts."""
    if not seeds:
        raise InputError("--seeds: at least one seed is needed")
    if workers is not None and workers < 1:
        raise InputError(f"--workers: must be >= 1 (0 on the command line: all cores), got {workers}")
    if client_max_waiting is not None and client_max_waiting < 1:
        raise InputError(f"--client-max-waiting: must be >= 1, got {client_max_waiting}")


def replay_runs(
    runs: Sequence[RealRun],
    profile_for: Callable[[str], Profile],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    client_max_waiting: int | None = REFERENCE_CLIENT_CAP,
    duration_s: float | None = None,
    starvation_threshold: float = 0.1,
    workers: int | None = None,
    on_done: Callable[[], None] | None = None,
    server: dict[str, int] | None = None,
) -> list[ReplayResult]:
    """Simulate every run that ran or failed to start, once per seed, on `workers` processes
    (default: all cores), each over `duration_s` or else its own window (`run_duration`).
    `profile_for(model)` gives the profile of each run's model; `server`
    sets flags of every run's server (max_num_seqs, max_num_batched_tokens; see `run_server`).
    The starvation flag is taken on the seeds' mean throughput/offered ratio."""
    check_replay_options(seeds, workers, client_max_waiting)
    runs = [r for r in runs if r.start_known]
    profiles = {model: profile_for(model) for model in sorted({r.model for r in runs})}
    tasks = [
        (run, profiles[run.model], seed, client_max_waiting, duration_s or run_duration(run), starvation_threshold,
         dict(server or {}))
        for run in runs for seed in seeds
    ]
    workers = workers or os.cpu_count() or 1
    outputs: list[dict] = []
    if workers == 1:
        for task in tasks:
            outputs.append(_replay_one(task))
            if on_done:
                on_done()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for out in pool.map(_replay_one, tasks, chunksize=2):
                outputs.append(out)
                if on_done:
                    on_done()
    results = []
    n = len(seeds)
    for i, run in enumerate(runs):
        per_seed = outputs[i * n : (i + 1) * n]
        if not per_seed[0]["started"]:
            results.append(ReplayResult(run=run, started=False, failure=per_seed[0]["failure"], seeds=n))
            continue
        ratio = _mean([o["throughput_over_offered"] for o in per_seed])
        results.append(ReplayResult(
            run=run,
            started=True,
            seeds=n,
            total_tok_s=_mean([o["total_tok_s"] for o in per_seed]),
            **{name: _mean([o[name] for o in per_seed]) for name in LATENCY_METRICS},
            throughput_over_offered=ratio,
            starved=bool(1.0 - ratio >= starvation_threshold),
            terms_per_token=np.mean([o["terms_per_token"] for o in per_seed], axis=0),
            terms_per_step=np.mean([o["terms_per_step"] for o in per_seed], axis=0),
            overhead_per_token_ms=_mean([o["overhead_per_token_ms"] for o in per_seed]),
            overhead_per_step_ms=_mean([o["overhead_per_step_ms"] for o in per_seed]),
            steps=_mean([o["steps"] for o in per_seed]),
            itl_delivery_factor=_mean([o["itl_delivery_factor"] for o in per_seed]),
            duration_s=duration_s or run_duration(run),
        ))
    return results
