"""Write the reference profiles: the published twin's cost model, for comparison.

Usage: python scripts/build_reference_profiles.py [SHARED_DATA_DIR]   (default: ../shared/data)

They are installed as `<model>-reference` (e.g. `llama-3.1-8b-instruct-reference`); the default
profiles `<model>` are fitted by `loratwin calibrate` (see the README).

Sources (see SHARED_DATA_DIR/README.md for provenance):
- step time and scheduler overhead: the constants of profiles-reference.md (the published twin's fit;
  the decode constants refit exactly from calibration/decode_latency.csv);
- adapter load times: calibration/adapter_loading.csv (load_ms_mean, disk_load_ms_mean);
- KV capacity and start failures: calibration/kv_capacity.csv, and the inputs of vLLM's memory model
  (`kv.memory`, loratwin.profiles.derive.kv.reference_kv_memory) for the configurations it does not
  cover; max_model_len as in the runs (the model's max_position_embeddings);
- placement constants: the defaults of loratwin.profiles.model.PlacementModel, fitted on the twin
  (their provenance says how), as every built-in profile carries them.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import yaml

from loratwin.profiles.derive.kv import reference_kv_memory
from loratwin.profiles.model import PlacementModel

OUT = Path(__file__).resolve().parents[1] / "src" / "loratwin" / "profiles" / "data"

MODELS = {
    "llama-3.1-8b-instruct": {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "max_model_len": 131072,
        # itl_ms = c1 * N + c2 ; overhead_pct = d1 * A + d2 (profiles-reference.md)
        "c1": 0.0437994, "c2": 10.54174836, "d1": 1.93011757, "d2": 200.01448221,
    },
    "qwen-2.5-7b-instruct": {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "max_model_len": 32768,
        "c1": 0.04894489, "c2": 10.61679297, "d1": 1.66851571, "d2": 177.69399315,
    },
}

# Scheduler overhead of profiles-reference.md: least squares on min-max scaled features (seconds),
# rewritten here as a plain linear form in ms.
_B_MIN, _B_MAX, _W_MAX, _WGC_MAX = 0.232143, 1081.371212, 20309.088235, 16371.311594
SCHEDULER_OVERHEAD = {
    "intercept_ms": 1000 * (-0.004373 * _B_MIN / (_B_MAX - _B_MIN) - 0.000196422634),
    "per_running_ms": 1000 * 0.004373 / (_B_MAX - _B_MIN),
    "per_waiting_ms": 1000 * 0.004615 / _W_MAX,
    "per_waiting_slot_share_ms": -1000 * 0.004391 / _WGC_MAX,
}

GPU = "NVIDIA H100 64 GB (inferred), gpu_memory_utilization 0.9"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def build(data_dir: Path) -> dict[str, dict]:
    loads = _rows(data_dir / "calibration" / "adapter_loading.csv")
    kv_rows = _rows(data_dir / "calibration" / "kv_capacity.csv")
    profiles = {}
    for name, m in MODELS.items():
        cpu_to_gpu: dict[int, dict[int, float]] = {}
        disk: dict[int, dict[int, float]] = {}
        for r in loads:
            if r["model"] != name or r["status"] != "ok":
                continue
            mr, ar = int(r["max_lora_rank"]), int(r["adapter_rank"])
            cpu_to_gpu.setdefault(mr, {})[ar] = round(float(r["load_ms_mean"]), 6)
            disk.setdefault(mr, {})[ar] = round(float(r["disk_load_ms_mean"]), 6)
        capacity: dict[int, dict[int, int | None]] = {}
        reasons: dict[int, dict[int, str]] = {}
        for r in kv_rows:
            if r["model"] != name:
                continue
            rank, loras = int(r["max_lora_rank"]), int(r["max_loras"])
            if r["feasible"] == "1":
                capacity.setdefault(rank, {})[loras] = int(r["kv_cache_tokens"])
            else:
                capacity.setdefault(rank, {})[loras] = None
                reasons.setdefault(rank, {})[loras] = r["failure_detail"].replace("_", " ")
        profiles[name] = {
            "name": f"{name}-reference",
            "model": m["model"],
            "gpu": GPU,
            "engine": "vLLM 0.8.5, V1 engine, prefix caching off, max_num_batched_tokens 2048",
            "source": "profiles-reference.md constants; calibration/adapter_loading.csv; calibration/kv_capacity.csv",
            "fitted": "reference",
            "tokenizer": name,
            "step_time": {
                "base_ms": m["c2"],
                "per_seq_ms": m["c1"],
                "per_prefill_token_ms": 0.0,
                "per_context_token_ms": 0.0,
                "lora_factor_base": m["d2"] / 100,
                "lora_factor_per_adapter": m["d1"] / 100,
            },
            "scheduler_overhead": {k: round(v, 12) for k, v in SCHEDULER_OVERHEAD.items()},
            "adapter_load": {
                "cpu_to_gpu_ms": {k: dict(sorted(v.items())) for k, v in sorted(cpu_to_gpu.items())},
                "disk_to_cpu_ms": {k: dict(sorted(v.items())) for k, v in sorted(disk.items())},
            },
            "kv": {
                "block_size": 16,
                "measured_max_num_seqs": 2048,
                "capacity_tokens": {k: dict(sorted(v.items())) for k, v in sorted(capacity.items())},
                "infeasible_reason": {k: dict(sorted(v.items())) for k, v in sorted(reasons.items())},
                "memory": reference_kv_memory(m["model"], m["max_model_len"]).model_dump(),
            },
            "placement": PlacementModel().model_dump(),
        }
    return profiles


def main() -> None:
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
    OUT.mkdir(parents=True, exist_ok=True)
    for name, profile in build(data_dir).items():
        path = OUT / f"{name}-reference.yaml"
        header = "# Written by scripts/build_reference_profiles.py from the reference measurements; do not edit by hand.\n"
        path.write_text(header + yaml.safe_dump(profile, sort_keys=False))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
