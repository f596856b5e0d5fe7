"""Check derived profiles against real vLLM runs, and the quickstart's answer on a derived H200 profile.

    python scripts/check_derived_profile.py [--data ../shared/data] [--seeds 3] [--workers 2] [--skip-quickstart]

1. Derives Qwen/Qwen2.5-7B-Instruct and meta-llama/Llama-3.1-8B-Instruct on the reference GPU (h100-64gb)
   with the reference servers' flags (max_num_seqs 2048, max_num_batched_tokens 2048,
   gpu_memory_utilization 0.9): step time from the roofline fitted on Llama only, KV capacity from the
   memory model; nothing measured on Qwen enters.
2. Replays the dt_modelling real runs of each model with its derived profile (as `loratwin validate`
   does, with the reference client's queue cap) and prints the error table: throughput half-SMAPE
   (the target is <= 5% for Qwen, the model the factors were not fitted on), ITL, TTFT, starvation and
   start-failure agreement. Llama is the fit set, shown for comparison.
3. Runs `loratwin quickstart --json` on the built-in H100 64 GB profile and on a profile derived for
   Llama on an H200, and prints adapters per GPU, --max-loras and GPUs for the example.
About 10 minutes per model and seed on two cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
from loratwin.profiles.derive.memory import MemoryFlags
from loratwin.profiles.derive.profile import derive_profile, derived_profile_yaml, tokenizer_table_for
from loratwin.report.console import print_error_table
from loratwin.validate import error_table, load_runs, replay_runs
from loratwin.workload.length_tables import available_tables

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_FLAGS = MemoryFlags(gpu_memory_utilization=0.9, max_num_seqs=2048, max_num_batched_tokens=2048)
# run model name in runs.csv -> Hugging Face id of the built-in architecture
MODELS = {"qwen-2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct", "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct"}
TARGET_PCT = 5.0


def derived(model_id: str, gpu: str, flags: MemoryFlags = REFERENCE_FLAGS):
    arch = resolve_model(model_id)
    return derive_profile(arch, resolve_gpu(gpu), flags, tokenizer=tokenizer_table_for(arch.name, available_tables()))


def check_runs(data: Path, seeds: int, workers: int) -> dict[str, float]:
    runs = [r for r in load_runs(data / "real-vllm" / "runs.csv") if r.source_set == "dt_modelling" and r.model in MODELS]
    profiles = {name: derived(model_id, "h100-64gb") for name, model_id in MODELS.items()}
    for name, profile in profiles.items():
        kv = profile.kv.tokens(8, 16)
        print(f"{name}: derived {profile.name}; base {profile.step_time.base_ms:.2f} ms + "
              f"{profile.step_time.per_seq_ms:.4f} ms/seq; KV at max_loras 8, rank 16: {kv:,} tokens", flush=True)
    results = replay_runs(runs, profiles.__getitem__, seeds=tuple(range(seeds)), workers=workers)
    table = error_table(results)
    from rich.console import Console

    print_error_table(table, Console(width=160))
    errors = {row["model"]: row["total_tok_s"]["half_smape"] for row in table}
    for name, error in errors.items():
        role = "fit set" if name.startswith("llama") else f"not fitted on; target <= {TARGET_PCT:g}%"
        print(f"{name} ({role}): throughput half-SMAPE {error:.2f}% over "
              f"{next(r['total_tok_s']['n'] for r in table if r['model'] == name)} runs")
    return errors


def quickstart(profile: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "loratwin.cli", "quickstart", "--profile", profile, "--json"],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def check_quickstart() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "llama-h200.yaml"
        path.write_text(derived_profile_yaml(derived(MODELS["llama-3.1-8b-instruct"], "h200"),
                                             "scripts/check_derived_profile.py"))
        for label, profile in (("built-in llama-3.1-8b-instruct (H100 64 GB, calibrated)", "llama-3.1-8b-instruct"),
                               ("derived Llama 3.1 8B on h200", str(path))):
            doc = quickstart(profile)
            placement = doc.get("placement")
            gpus = placement["gpu_count"] if placement else 1
            print(f"quickstart on {label}: {doc['served']} adapters per GPU with --max-loras {doc['max_loras']}, "
                  f"{gpus} GPU(s) for all {doc['adapters_given']}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-quickstart", action="store_true")
    parser.add_argument("--skip-runs", action="store_true")
    args = parser.parse_args()
    if not args.skip_runs:
        check_runs(args.data, args.seeds, args.workers)
    if not args.skip_quickstart:
        check_quickstart()
    return 0


if __name__ == "__main__":
    sys.exit(main())
