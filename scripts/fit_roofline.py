"""Fit the roofline's efficiency factors on one model (Llama 3.1 8B on the reference H100 64 GB) and write
src/loratwin/profiles/derive/data/roofline.yaml.

    python scripts/fit_roofline.py [--data ../shared/data] [--rounds 4] [--workers 2] [--out FILE]

Only llama-3.1-8b-instruct rows are read; no other model's measurement enters. In order:
1. bandwidth efficiency, fixed step overhead and decode compute efficiency: non-negative least squares
   in relative error of the no-LoRA decode step (mean ITL less the measured scheduler time) on
   weights + context KV bytes over bandwidth and FLOPs of the running batch over bf16 peak
   (calibration/decode_latency.csv, default_latency_output rows);
2. adapter loads: CPU->GPU means (a cost per LoRA layer, one more when the rank is below
   max_lora_rank; the bytes over PCIe bound larger adapters only) and disk->CPU means (a cost per LoRA layer, the bytes at a
   host read speed) by least squares (calibration/adapter_loading.csv);
3. scheduler overhead and output-token ratio: calibrate's fits (scheduler_overhead.csv, which records
   no model; the unstarved Llama dt_modelling runs);
4. prefill and LoRA terms: calibrate's twin-in-the-loop fit on the Llama dt_modelling runs of
   real-vllm/runs.csv, with the base terms of step 1 fixed and the measured Llama KV table standing
   in for the memory model; the fitted terms are divided by Llama's counts (roofline.py) into factors.
Then prints checks on what the fit did not use: the LoRA-overhead runs (calibration/lora_overhead.csv:
step compute at 1-131 adapters in the batch against the measured ITL less the scheduler time) and the
prefill runs (calibration/prefill_latency.csv: run duration). About 25 minutes on two cores.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import nnls

from loratwin.files import atomic_write
from loratwin.profiles.derive.adapter_loads import adapter_load_model, cpu_to_gpu_ms, disk_to_cpu_ms
from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
from loratwin.profiles.derive.roofline import (
    LORA_LAYERS_PER_DECODER_LAYER,
    AdapterLoadFactors,
    RooflineFactors,
    decode_flops_per_token,
    factors_from_step_time,
    lora_adapter_bytes,
    step_time_model,
    weight_bytes,
)
from loratwin.profiles.model import GenerationModel, PlacementModel, Profile, StepTimeModel
from loratwin.validate import load_runs
from loratwin.validate.calibrate import fit_kv_capacity, fit_output_ratio, fit_scheduler_overhead, fit_step_time_on_runs

ROOT = Path(__file__).resolve().parents[1]
MODEL_KEY = "llama-3.1-8b-instruct"
MODEL_ID = "meta-llama/Llama-3.1-8B-Instruct"
GPU = "h100-64gb"
OUT = ROOT / "src" / "loratwin" / "profiles" / "derive" / "data" / "roofline.yaml"


def rows(path: Path, **equal: str) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [r for r in csv.DictReader(handle)
                if r["model"] == MODEL_KEY and all(r.get(k) == v for k, v in equal.items())]


def column(table: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) for r in table])


def fit_base(data: Path, arch, gpu) -> tuple[RooflineFactors, float]:
    """Step 1: (factors with the LoRA and prefill ones unset, mean relative error in %)."""
    table = [r for r in rows(data / "calibration" / "decode_latency.csv", status="ok",
                             experiment_set="default_latency_output") if r["mean_scheduler_time_us"]]
    n = column(table, "mean_running")
    context = n * (column(table, "input_tokens") + column(table, "output_tokens") / 2)
    step_ms = column(table, "mean_itl_ms") - column(table, "mean_scheduler_time_us") / 1000
    bandwidth, flops = gpu.memory_bandwidth_gb_s * 1e9, gpu.bf16_dense_tflops * 1e12
    x = np.column_stack([
        np.ones_like(n),
        (weight_bytes(arch) + context * arch.kv_bytes_per_token) / bandwidth * 1e3,
        n * decode_flops_per_token(arch) / flops * 1e3,
    ])
    coef, _ = nnls(x / step_ms[:, None], np.ones_like(step_ms))
    error = float(100 * np.mean(np.abs(x @ coef - step_ms) / step_ms))
    factors = RooflineFactors(
        step_overhead_ms=round(float(coef[0]), 6), bandwidth_efficiency=round(1 / coef[1], 6),
        decode_compute_efficiency=round(1 / coef[2], 6), prefill_compute_efficiency=1.0,
        lora_launch_ms=0.0, lora_empty_block_ns=0.0, lora_block_ns=0.0, lora_rank_block_ns=0.0,
    )
    print(f"decode step (no LoRA), {len(table)} runs: step overhead {coef[0]:.3f} ms, bandwidth efficiency "
          f"{1 / coef[1]:.3f}, decode compute efficiency {1 / coef[2]:.3f}; mean error {error:.2f}%")
    return factors, error


def fit_loads(data: Path, arch, gpu) -> tuple[AdapterLoadFactors, float, float]:
    """Step 2: (factors, mean relative errors in % of the CPU->GPU and disk->CPU means)."""
    table = rows(data / "calibration" / "adapter_loading.csv", status="ok")
    layers = arch.num_hidden_layers * LORA_LAYERS_PER_DECODER_LAYER
    rank, max_rank = column(table, "adapter_rank"), column(table, "max_lora_rank")
    gigabytes = np.array([lora_adapter_bytes(arch, int(r)) / 1e9 for r in rank])
    cpu, disk = column(table, "load_ms_mean"), column(table, "disk_load_ms_mean")
    # the measured adapters (rank <= 32) all load in less than their bytes over PCIe take: the fixed costs alone
    x = np.column_stack([np.full_like(rank, layers), layers * (rank < max_rank)])
    c, _ = nnls(x, cpu)
    d, _ = nnls(np.column_stack([np.full_like(rank, layers), gigabytes]), disk)
    factors = AdapterLoadFactors(
        cpu_to_gpu_ms_per_layer=round(float(c[0]), 6), cpu_to_gpu_padded_ms_per_layer=round(float(c[1]), 6),
        disk_to_cpu_ms_per_layer=round(float(d[0]), 6),
        disk_ms_per_gb=round(float(d[1]), 6),
    )
    cpu_fit = np.array([cpu_to_gpu_ms(arch, gpu, factors, int(m), int(r)) for m, r in zip(max_rank, rank, strict=True)])
    disk_fit = np.array([disk_to_cpu_ms(arch, factors, int(r)) for r in rank])
    cpu_err = float(100 * np.mean(np.abs(cpu_fit - cpu) / cpu))
    disk_err = float(100 * np.mean(np.abs(disk_fit - disk) / disk))
    print(f"adapter loads, {len(table)} settings: CPU->GPU {c[0] * 1e3:.1f} us per LoRA layer, +{c[1] * 1e3:.1f} us "
          f"below max rank (mean error {cpu_err:.1f}%); disk->CPU {d[0] * 1e3:.1f} us "
          f"per LoRA layer + {d[1]:.1f} ms/GB (mean error {disk_err:.1f}%)")
    return factors, cpu_err, disk_err


def check_lora_overhead(data: Path, profile: Profile) -> float:
    """Step compute against the LoRA-overhead runs with a logged adapter count (not fitted on)."""
    table = [r for r in rows(data / "calibration" / "lora_overhead.csv", status="ok",
                             experiment_set="restricted_adapters") if r["mean_unique_adapters_per_batch"]]
    errors = []
    for r in table:
        n, adapters = float(r["mean_running"]), float(r["mean_unique_adapters_per_batch"])
        prefill = max(0.0, float(r["mean_batched_tokens"]) - n)
        context = n * (float(r["input_tokens"]) + float(r["output_tokens"]) / 2)
        cost = profile.step_cost(int(r["max_loras"]), int(r["max_lora_rank"]))
        predicted = cost.compute_ms(n, prefill, context, adapters)
        measured = float(r["mean_itl_ms"]) - float(r["mean_scheduler_time_us"]) / 1000
        errors.append((predicted - measured) / measured)
        print(f"  LoRA overhead check: {adapters:6.1f} adapters, {n:5.0f} running: step {measured:5.1f} ms measured, "
              f"{predicted:5.1f} predicted")
    error = float(100 * np.mean(np.abs(errors)))
    print(f"LoRA-overhead runs (not fitted on), {len(table)} runs: mean error {error:.2f}%, bias {100 * np.mean(errors):+.2f}%")
    return error


def check_prefill(data: Path, profile: Profile, budget: int = 2048) -> float:
    """Run durations of the prefill runs (all prompts at once, one output token; not fitted on):
    steps of `budget` prompt tokens, each holding budget / prompt length requests."""
    table = rows(data / "calibration" / "prefill_latency.csv", status="ok")
    errors = []
    for r in table:
        total, prompt = float(r["total_input_tokens"]), float(r["input_tokens"])
        steps = total / budget
        step = float(profile.step_cost(1, 8).compute_ms(budget / prompt, budget, 0.0, 0))
        errors.append((steps * step / 1000 - float(r["duration_s"])) / float(r["duration_s"]))
    error = float(100 * np.mean(np.abs(errors)))
    print(f"prefill runs (not fitted on), {len(table)} runs: duration mean error {error:.2f}%, bias {100 * np.mean(errors):+.2f}%")
    return error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    arch, gpu = resolve_model(MODEL_ID), resolve_gpu(GPU)
    base, base_err = fit_base(args.data, arch, gpu)
    loads, cpu_err, disk_err = fit_loads(args.data, arch, gpu)
    runs = [r for r in load_runs(args.data / "real-vllm" / "runs.csv")
            if r.model == MODEL_KEY and r.source_set == "dt_modelling"]
    scheduler = fit_scheduler_overhead(args.data / "calibration" / "scheduler_overhead.csv")
    ratio = fit_output_ratio(runs)
    base_step = step_time_model(arch, gpu, base)
    start = Profile(
        name=f"{MODEL_KEY}-roofline-fit", model=MODEL_ID, gpu=gpu.description, fitted="derived",
        step_time=StepTimeModel(base_ms=base_step.base_ms, per_seq_ms=base_step.per_seq_ms,
                                per_context_token_ms=base_step.per_context_token_ms),
        scheduler_overhead=scheduler, adapter_load=adapter_load_model(arch, gpu, loads),
        # the measured Llama table stands in for the memory model, for this fit only
        kv=fit_kv_capacity(args.data / "calibration" / "kv_capacity.csv", MODEL_KEY),
        generation=GenerationModel(output_tokens_ratio=ratio), placement=PlacementModel(),
    )

    def on_round(i, fit_round):
        print(f"  round {i}: throughput err {fit_round.throughput_error:.2f}%, ITL err {fit_round.itl_error:.2f}%, "
              f"starvation agreement {100 * fit_round.starvation_agreement:.1f}%", flush=True)

    print(f"twin-in-the-loop fit of the prefill and LoRA terms on {len(runs)} Llama dt_modelling runs:", flush=True)
    fitted, history = fit_step_time_on_runs(start, runs, rounds=args.rounds, workers=args.workers, on_round=on_round)
    best = min(history, key=lambda r: r.score)
    factors = factors_from_step_time(fitted.step_time, arch, gpu, base)
    derived = fitted.model_copy(update={"step_time": step_time_model(arch, gpu, factors)})
    lora_err = check_lora_overhead(args.data, derived)
    prefill_err = check_prefill(args.data, derived)
    document = {
        "fitted_on": {"model": MODEL_ID, "gpu": GPU, "memory_bandwidth_gb_s": gpu.memory_bandwidth_gb_s,
                      "bf16_dense_tflops": gpu.bf16_dense_tflops, "pcie_gb_s": gpu.pcie_gb_s},
        "provenance": (
            f"scripts/fit_roofline.py on the {MODEL_KEY} rows of the reference measurements only: step_overhead_ms, "
            "bandwidth_efficiency, decode_compute_efficiency on calibration/decode_latency.csv (no-LoRA decode, ITL "
            "less scheduler time); adapter_load on calibration/adapter_loading.csv; scheduler_overhead on "
            "calibration/scheduler_overhead.csv (records no model); output_tokens_ratio and the prefill and LoRA "
            f"factors on the {len(runs)} dt_modelling runs of real-vllm/runs.csv with the twin in the loop (measured "
            "Llama KV table). Efficiencies are relative to the fitted_on GPU's figures in gpus.yaml. Checked, not "
            "fitted: calibration/lora_overhead.csv and prefill_latency.csv (errors under checks)."
        ),
        "step_time": factors.model_dump(),
        "adapter_load": loads.model_dump(),
        "scheduler_overhead": scheduler.model_dump(),
        "output_tokens_ratio": ratio,
        "checks": {
            "decode_step_error_pct": round(base_err, 2), "cpu_to_gpu_load_error_pct": round(cpu_err, 2),
            "disk_to_cpu_load_error_pct": round(disk_err, 2),
            "fit_runs_throughput_half_smape_pct": round(best.throughput_error, 2),
            "fit_runs_itl_half_smape_pct": round(best.itl_error, 2),
            "lora_overhead_step_error_pct": round(lora_err, 2), "prefill_duration_error_pct": round(prefill_err, 2),
        },
    }
    command = "python " + " ".join(shlex.quote(a) for a in ["scripts/fit_roofline.py", *sys.argv[1:]])
    text = (f"# Roofline efficiency factors of derived profiles (loratwin.profiles.derive.roofline).\n"
            f"# Written by: {command}\n" + yaml.safe_dump(document, sort_keys=False))
    atomic_write(args.out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"factors: {factors.model_dump()}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
