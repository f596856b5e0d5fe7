"""Check `loratwin profile fit`: fit a Llama profile on 24 runs a lab would make, replay the held-out runs.

    nice python scripts/check_profile_fit.py [--workers 2] [--out DIR]

1. The runs a lab would measure: the experiment plan of `loratwin profile plan`
   (loratwin.lab.plan.plan_experiments: 19 runs for Llama on the 64 GB H100), filled up to --runs
   (24) from STAND_IN_PLAN below (a spread over max_loras 8-192, served 8-384, both rank mixes and both
   rate sets, starved and not). For each planned configuration, the nearest measured ok run of
   llama-3.1-8b-instruct in the `dt_modelling` set of ../shared/data/real-vllm/runs.csv not taken yet
   (loratwin.validate.nearest_runs: served, max_loras, max_lora_rank and offered request rate).
2. Those rows, as `loratwin profile import` would give them: the server's KV cache size of each run is
   its `kv_cache_tokens_lookup` (the size the server logs at that max_loras and max_lora_rank,
   measured in calibration/kv_capacity.csv), written to `kv_cache_tokens`.
3. The fit starts from the derived profile of Llama on the 64 GB H100 (`loratwin profile derive`:
   memory model, roofline; its roofline factors were fitted on the Llama dt_modelling runs and
   calibration files, never on ml_test), or with --start stand-in from the built-in llama profile
   with every step-time term replaced by a roofline at peak datasheet figures (weights and KV read
   once per step, prompt FLOPs at peak, no LoRA cost).
4. Every Llama `ml_test` run that ran or failed to start (never seen by the fit) is replayed with the
   fitted profile; the errors are those `loratwin validate` reports (half-SMAPE, %).

Target: throughput error <= 2.5 % on Llama ml_test.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from loratwin.validate.fit_profile import DEFAULT_ROUNDS  # noqa: E402
from loratwin.validate.nearest_runs import WantedRun  # noqa: E402

RUNS_CSV = ROOT.parent / "shared" / "data" / "real-vllm" / "runs.csv"
MODEL = "llama-3.1-8b-instruct"
HF_ID = "meta-llama/Llama-3.1-8B-Instruct"
GPU = "h100-64gb"
TARGET_PCT = 2.5
HIGH, LOW = (0.4, 0.8, 1.6), (0.025, 0.05, 0.1)
# (max_lora_rank, rate levels, max_loras, served): capacity-bound runs at every max_loras and both
# ranks, and unstarved ones from light to heavy, for ITL and the LoRA terms.
STAND_IN_PLAN = [
    WantedRun(served, loras, rank, rates, (8, 16) if rank == 16 else (8, 16, 32))
    for rank, rates, loras, served in [
        (16, HIGH, 8, 16), (16, HIGH, 8, 64), (16, HIGH, 16, 32), (16, HIGH, 16, 384), (16, HIGH, 32, 128),
        (16, HIGH, 64, 256), (16, HIGH, 128, 384), (16, HIGH, 192, 384),
        (32, HIGH, 8, 32), (32, HIGH, 16, 16), (32, HIGH, 32, 192), (32, HIGH, 64, 64), (32, HIGH, 64, 384),
        (16, LOW, 8, 128), (16, LOW, 8, 384), (16, LOW, 16, 256), (16, LOW, 32, 384), (16, LOW, 64, 192),
        (16, LOW, 128, 320),
        (32, LOW, 8, 32), (32, LOW, 8, 256), (32, LOW, 16, 64), (32, LOW, 32, 320), (32, LOW, 64, 384),
    ]
]


def planned_runs() -> tuple[list, str]:
    """The experiment plan's runs for Llama on the reference GPU, then STAND_IN_PLAN (the nearest
    runs are taken in this order until --runs are picked)."""
    from loratwin.lab.plan import plan_experiments
    from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model

    plan = plan_experiments(resolve_model(HF_ID), resolve_gpu(GPU))
    return [*plan, *STAND_IN_PLAN], f"the {len(plan)} runs of loratwin.lab.plan.plan_experiments, then the stand-in plan"


def roofline_stand_in():
    """The built-in llama profile with its step time replaced by a peak-datasheet roofline."""
    from loratwin.profiles import load_profile
    from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
    from loratwin.profiles.model import StepTimeModel

    arch, gpu = resolve_model(HF_ID), resolve_gpu(GPU)
    bytes_per_ms = gpu.memory_bandwidth_gb_s * 1e9 / 1000
    step = StepTimeModel(
        base_ms=round(arch.parameters * arch.dtype_bytes / bytes_per_ms, 6),
        per_seq_ms=0.0,
        per_prefill_token_ms=round(2 * arch.parameters / (gpu.bf16_dense_tflops * 1e12 / 1000), 9),
        per_context_token_ms=round(arch.kv_bytes_per_token / bytes_per_ms, 9),
    )
    base = load_profile(MODEL)
    return base.model_copy(update={"name": f"{MODEL}-stand-in", "step_time": step, "fitted": "custom",
                                   "source": "stand-in: built-in profile with a peak-datasheet roofline step time"})


def start_profile(choice: str):
    """The derived profile (auto), the stand-in, or a given profile; and how to name it."""
    from loratwin.profiles import load_profile

    if choice not in ("auto", "stand-in"):
        return load_profile(choice), f"profile {choice}"
    if choice == "stand-in":
        return roofline_stand_in(), "stand-in (built-in llama profile, roofline step time)"
    from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
    from loratwin.profiles.derive.profile import derive_profile, serve_flags, tokenizer_table_for
    from loratwin.workload.length_tables import available_tables

    arch, gpu = resolve_model(HF_ID), resolve_gpu(GPU)
    # the reference servers' flags (max_model_len: the model's own)
    flags = serve_flags(arch, gpu_memory_utilization=0.9, max_num_seqs=2048, max_num_batched_tokens=2048)
    profile = derive_profile(arch, gpu, flags, tokenizer=tokenizer_table_for(HF_ID, available_tables()))
    return profile, f"the derived profile ({profile.name})"


def write_lab_table(rows: list[dict], path: Path) -> None:
    fields = [f for f in rows[0] if f != "kv_cache_tokens_lookup"] + ["kv_cache_tokens"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "kv_cache_tokens": row["kv_cache_tokens_lookup"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=24, help="runs to fit on")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--fit-seeds", type=int, default=1)
    parser.add_argument("--test-seeds", type=int, default=2)
    parser.add_argument("--start", default="auto", help="auto (the derived profile), stand-in, or a profile")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "profile-fit-check")
    parser.add_argument("--also-start", action="store_true", help="replay ml_test with the start profile too")
    args = parser.parse_args()

    import yaml

    from loratwin.validate import error_table, load_runs, replay_runs
    from loratwin.validate.fit_profile import FIT_COLUMNS, fit_profile, select_fit_runs
    from loratwin.validate.nearest_runs import nearest_runs

    args.out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(RUNS_CSV)
    pool = [r for r in runs if r.model == MODEL and r.source_set == "dt_modelling"]
    wanted, plan_source = planned_runs()
    picked = nearest_runs(wanted[: args.runs], pool)
    assert all(r.source_set == "dt_modelling" for r in picked)
    ids = {r.run_id for r in picked}
    with RUNS_CSV.open(newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["run_id"] in ids]
    lab_csv = args.out / "lab-runs.csv"
    write_lab_table(rows, lab_csv)
    lab_runs = select_fit_runs(load_runs(lab_csv, required=FIT_COLUMNS), MODEL, str(lab_csv))
    print(f"plan: {plan_source}; {len(lab_runs)} dt_modelling runs picked "
          f"({sum(bool(r.starved) for r in lab_runs)} starved):")
    for r in lab_runs:
        print(f"  max_loras {r.max_loras:3d}  served {r.served_adapters:3d}  max_rank {r.max_lora_rank}  "
              f"rates {'/'.join(f'{v:g}' for v in r.rate_values)}  {'starved' if r.starved else 'ok'}")

    start, started_from = start_profile(args.start)
    print(f"start: {started_from}: {start.step_time.model_dump()}")
    t0 = time.monotonic()
    result = fit_profile(
        start, lab_runs, name=f"{MODEL}-fitted", source=f"check_profile_fit.py: {started_from}, {len(lab_runs)} runs",
        rounds=args.rounds, seeds=tuple(range(args.fit_seeds)), workers=args.workers,
        on_round=lambda i, r: print(f"  round {i}: throughput err {r.throughput_error:.2f}%, ITL err "
                                    f"{r.itl_error:.2f}%, starvation {100 * r.starvation_agreement:.1f}%", flush=True),
    )
    fit_s = time.monotonic() - t0
    (args.out / "fitted.yaml").write_text(yaml.safe_dump(result.profile.model_dump(mode="json"), sort_keys=False))
    print(f"fit: {fit_s:.0f} s; fitted step time: {result.profile.step_time.model_dump()}")

    test = [r for r in runs if r.model == MODEL and r.source_set == "ml_test" and r.start_known]
    profiles = [("the fitted profile", result.profile)] + ([("the start profile", start)] if args.also_start else [])
    for what, profile in profiles:
        t0 = time.monotonic()
        results = replay_runs(test, lambda _m, p=profile: p, seeds=tuple(range(args.test_seeds)), workers=args.workers)
        row = error_table(results)[0]
        t, i = row["total_tok_s"], row["mean_itl_ms"]
        print(f"held-out Llama ml_test, {what} ({t['n']} ok runs, {args.test_seeds} seeds, "
              f"replay {time.monotonic() - t0:.0f} s):")
        print(f"  throughput err {t['half_smape']:.2f}% (bias {t['bias']:+.2f}%), ITL err {i['half_smape']:.2f}% "
              f"(bias {i['bias']:+.2f}%), starvation agreement {100 * row['starvation_agreement']:.1f}% "
              f"({row['starvation_runs']} runs), start agreement {100 * row['start_agreement']:.1f}% "
              f"({row['start_runs']} runs)")
        verdict = "meets" if t["half_smape"] <= TARGET_PCT else "misses"
        print(f"  target throughput err <= {TARGET_PCT}%: {verdict}")


if __name__ == "__main__":
    main()
