"""Check the vLLM memory model (loratwin.profiles.derive.memory) on the measured KV cache sizes.

Usage: python scripts/check_kv_capacity.py [KV_CAPACITY_CSV] [--rows]
       (default: ../shared/data/calibration/kv_capacity.csv; --rows prints every configuration)

For every row of kv_capacity.csv (both models, GPU h100-64gb, max_loras and max_lora_rank from the
row, gpu_memory_utilization 0.9, max_num_seqs 2048, max_num_batched_tokens 2048, block size 16,
max_model_len 131072 for Llama and 32768 for Qwen as in the runs) it predicts the server's start
and "GPU KV cache size", and prints per model the max and median |error| % over the feasible points,
how many points agree on starting or not and on the failure's reason class, and the largest error
of the predicted "Model loading took" (weights + LoRA buffers). It also refits the one fitted
constant (non-torch bytes) on the Llama rows and prints it beside the shipped value.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

from loratwin.profiles.derive.allocator import CachingAllocator
from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
from loratwin.profiles.derive.memory import REFERENCE_NON_TORCH_BYTES, MemoryFlags, fit_non_torch_bytes, vllm_memory
from loratwin.profiles.derive.vllm_tensors import lora_tensors, runner_buffers, weight_tensors

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "calibration" / "kv_capacity.csv"
MODELS = {  # the data's model name -> (built-in architecture, max_model_len of the runs)
    "llama-3.1-8b-instruct": ("meta-llama/Llama-3.1-8B-Instruct", 131072),
    "qwen-2.5-7b-instruct": ("Qwen/Qwen2.5-7B-Instruct", 32768),
}
GPU = "h100-64gb"
FIT_MODEL = "llama-3.1-8b-instruct"


def _flags(row: dict[str, str], max_model_len: int) -> MemoryFlags:
    seqs = int(row["max_num_seqs"])
    return MemoryFlags(gpu_memory_utilization=float(row["gpu_memory_utilization"]), max_num_seqs=seqs,
                       max_num_batched_tokens=2048, max_model_len=max_model_len)


def _model_load_bytes(arch, flags: MemoryFlags, max_loras: int, max_lora_rank: int) -> int:
    """What vLLM logs as "Model loading took": torch's allocated bytes of weights and LoRA buffers."""
    alloc = CachingAllocator()
    alloc.allocate_all(runner_buffers(arch, flags.max_num_seqs, flags.max_num_batched_tokens,
                                      flags.max_model_len or arch.max_position_embeddings, flags.block_size))
    before = alloc.allocated
    alloc.allocate_all(weight_tensors(arch, max_loras) + lora_tensors(arch, max_loras, max_lora_rank,
                                                                      flags.max_num_batched_tokens))
    return alloc.allocated - before


def check(path: Path = DEFAULT_CSV, non_torch_bytes: int = REFERENCE_NON_TORCH_BYTES) -> dict:
    """Per model: the rows compared, and a summary. Also the non-torch bytes refitted on Llama."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    total = resolve_gpu(GPU).total_bytes
    out: dict = {"models": {}}
    for name, (hf_id, max_model_len) in MODELS.items():
        arch = resolve_model(hf_id)
        compared = []
        for row in (r for r in rows if r["model"] == name):
            s, r = int(row["max_loras"]), int(row["max_lora_rank"])
            flags = _flags(row, max_model_len)
            got = vllm_memory(arch, total, flags, s, r, non_torch_bytes=non_torch_bytes)
            measured_tokens = int(row["kv_cache_tokens"]) if row["feasible"] == "1" else None
            load = float(row["model_load_gib"]) * 2**30 if row["model_load_gib"] else None
            compared.append({
                "max_loras": s, "max_lora_rank": r, "measured_tokens": measured_tokens,
                "predicted_tokens": got.kv_tokens if got.starts else None,
                "measured_failure": row["failure_detail"] or None, "predicted_failure": got.failure,
                "load_error_mib": None if load is None else (_model_load_bytes(arch, flags, s, r) - load) / 2**20,
            })
        errors = [abs(c["predicted_tokens"] - c["measured_tokens"]) / c["measured_tokens"] * 100
                  for c in compared if c["measured_tokens"] and c["predicted_tokens"]]
        out["models"][name] = {
            "rows": compared,
            "feasible_points": sum(c["measured_tokens"] is not None for c in compared),
            "max_abs_error_pct": max(errors, default=float("nan")),
            "median_abs_error_pct": statistics.median(errors) if errors else float("nan"),
            "start_agreement": sum((c["measured_tokens"] is None) == (c["predicted_tokens"] is None) for c in compared),
            "reason_agreement": sum(c["measured_failure"] == c["predicted_failure"] for c in compared),
            "points": len(compared),
            "max_load_error_mib": max(abs(c["load_error_mib"]) for c in compared if c["load_error_mib"] is not None),
        }
    fit_rows = [r for r in rows if r["model"] == FIT_MODEL and r["feasible"] == "1"]
    hf_id, max_model_len = MODELS[FIT_MODEL]
    out["refit_non_torch_bytes"] = fit_non_torch_bytes(
        resolve_model(hf_id), total, _flags(fit_rows[0], max_model_len),
        [(int(r["max_loras"]), int(r["max_lora_rank"]), int(r["kv_cache_tokens"])) for r in fit_rows])
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--rows"]
    result = check(Path(args[0]) if args else DEFAULT_CSV)
    print(f"non-torch bytes: shipped {REFERENCE_NON_TORCH_BYTES:,}, refitted on {FIT_MODEL} rows "
          f"{result['refit_non_torch_bytes']:,}")
    for name, m in result["models"].items():
        print(f"{name}: {m['feasible_points']} feasible points, |error| max {m['max_abs_error_pct']:.2f}% "
              f"median {m['median_abs_error_pct']:.2f}%; starts or not agree {m['start_agreement']}/{m['points']}, "
              f"reason class agrees {m['reason_agreement']}/{m['points']}; model load |error| max "
              f"{m['max_load_error_mib']:.2f} MiB")
        if "--rows" in sys.argv:
            for c in m["rows"]:
                print(f"  {c['max_loras']:>4} x rank {c['max_lora_rank']:<3} measured {c['measured_tokens'] or c['measured_failure']!s:>40}"
                      f"  predicted {c['predicted_tokens'] or c['predicted_failure']!s:>40}")


if __name__ == "__main__":
    main()
