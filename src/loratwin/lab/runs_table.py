"""Rows of the runs table (the reference real-vllm/runs.csv format, which `loratwin validate` reads) from
a server's log and its benchmark clients' result files.

An imported row has the reference file's columns, in its order, and these after them: `kv_cache_tokens`
and `max_concurrency` (the server's "GPU KV cache size" and "Maximum concurrency" lines, for the KV
capacity at the row's `max_loras` and `max_lora_rank`), `max_cpu_loras`, `gpu_memory_utilization`,
`max_model_len`, `model_load_gib`, `vllm_version`, `result_files`. `kv_cache_tokens_lookup` holds the
same capacity as `kv_cache_tokens` (measured by this run, where the reference file looked it up).

How the columns differ from the reference runs: the benchmark client waits for every request, so
`duration_s` runs until the last one finished (past the send window, `configured_time_s`, when the
server fell behind) and throughput counts all finished requests; `pool_mean_output_tokens` is the mean
generated length (the requested lengths are not saved); `client_sent_requests` are the prompts sent.
Columns the lab does not measure (the Prometheus series, the published twin's output) stay empty.
"""

from __future__ import annotations

import math

import numpy as np

from loratwin.lab.bench_json import STAT_COLUMNS, SUMMARY_COLUMNS, BenchResult
from loratwin.lab.server_log import ServerFacts

# The header of the reference real-vllm/runs.csv.
REFERENCE_COLUMNS = (
    "run_id", "source_set", "model", "max_loras", "served_adapters", "max_lora_rank", "adapter_rank_cycle",
    "rate_values", "rate_counts", "aggregate_rate_req_s", "max_num_batched_tokens", "max_num_seqs",
    "configured_time_s", "duration_s", "status", "status_detail", "completed", "total_input_tokens",
    "total_output_tokens", "request_throughput_req_s", "input_tok_s", "output_tok_s", "total_tok_s",
    "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms",
    "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "pool_prompts", "pool_mean_input_tokens",
    "pool_mean_output_tokens", "approx_offered_tok_s", "client_sent_requests", "sent_offered_tok_s",
    "throughput_over_offered", "starved_approx", "ttft_with_unfinished_ms", "npy_samples", "npy_span_s",
    "max_waiting", "mean_waiting", "max_running", "mean_running", "kv_usage_mean", "kv_usage_max",
    "preemptions_total", "kv_cache_tokens_lookup", "paper_dt_total_tok_s", "paper_dt_itl_ms",
    "paper_dt_ttft_ms", "paper_dt_finished_requests",
)
EXTRA_COLUMNS = ("kv_cache_tokens", "max_concurrency", "max_cpu_loras", "gpu_memory_utilization", "max_model_len",
                 "model_load_gib", "vllm_version", "result_files")
COLUMNS = REFERENCE_COLUMNS + EXTRA_COLUMNS


def model_name(model_id: str) -> str:
    """How runs tables and built-in profiles name a model: the id's last part, lower case."""
    return model_id.rstrip("/").split("/")[-1].lower()


def server_row(facts: ServerFacts, run_id: str, source_set: str) -> dict[str, object]:
    """The columns a server's log gives, for a run that started or not."""
    return {
        "run_id": run_id, "source_set": source_set, "model": model_name(facts.model),
        "max_loras": facts.max_loras, "served_adapters": facts.served_adapters, "max_lora_rank": facts.max_lora_rank,
        "max_num_batched_tokens": facts.max_num_batched_tokens, "max_num_seqs": facts.max_num_seqs,
        "kv_cache_tokens_lookup": facts.kv_cache_tokens, "kv_cache_tokens": facts.kv_cache_tokens,
        "max_concurrency": facts.max_concurrency, "max_cpu_loras": facts.max_cpu_loras,
        "gpu_memory_utilization": facts.gpu_memory_utilization, "max_model_len": facts.max_model_len,
        "model_load_gib": facts.model_load_gib, "vllm_version": facts.vllm_version,
    }


def measured_columns(results: list[BenchResult]) -> dict[str, object]:
    """Totals and statistics of one run's result files (one per client), merged.

    Totals add up; the window is the longest client's. One file's statistics are its own. Several
    files' are computed from their per-request lists as vLLM computes them (pooled ITL gaps; TPOT of a
    request = the sum of its gaps / (output tokens - 1)); without the lists in every file, the means are
    weighted by requests (ITL by generated tokens) and medians and p99 stay empty."""
    total = {key: math.fsum(r.values[key] for r in results) for key in SUMMARY_COLUMNS if key != "duration"}
    duration = max(r.values["duration"] for r in results)
    row: dict[str, object] = {"duration_s": duration, "completed": int(total["completed"]),
                              "total_input_tokens": int(total["total_input_tokens"]),
                              "total_output_tokens": int(total["total_output_tokens"])}
    row["request_throughput_req_s"] = total["completed"] / duration
    row["input_tok_s"] = total["total_input_tokens"] / duration
    row["output_tok_s"] = total["total_output_tokens"] / duration
    row["total_tok_s"] = (total["total_input_tokens"] + total["total_output_tokens"]) / duration
    if len(results) == 1:
        row.update({k: results[0].values.get(k) for k in STAT_COLUMNS})
    elif all(r.has_lists for r in results):
        row.update(_stats_from_lists(results))
    else:
        completed = [r.values["completed"] for r in results]
        gaps = [max(0.0, r.values["total_output_tokens"] - r.values["completed"]) for r in results]
        for metric, weights in (("ttft", completed), ("tpot", completed), ("itl", gaps)):
            row[f"mean_{metric}_ms"] = _weighted([r.values[f"mean_{metric}_ms"] for r in results], weights)
    prompts = sum(r.num_prompts for r in results)
    row["pool_prompts"] = row["client_sent_requests"] = prompts
    if all(r.has_lists for r in results):
        inputs = [n for r in results for n in r.lists["input_lens"]]
        outputs = [n for r in results for n, ok in zip(r.lists["output_lens"], _succeeded(r), strict=True) if ok]
        row["pool_mean_input_tokens"] = float(np.mean(inputs))
        row["pool_mean_output_tokens"] = float(np.mean(outputs)) if outputs else None
    elif total["completed"]:
        row["pool_mean_input_tokens"] = total["total_input_tokens"] / total["completed"]
        row["pool_mean_output_tokens"] = total["total_output_tokens"] / total["completed"]
    if row.get("pool_mean_output_tokens") is not None:
        per_request = row["pool_mean_input_tokens"] + row["pool_mean_output_tokens"]
        row["sent_offered_tok_s"] = prompts * per_request / duration
        row["throughput_over_offered"] = row["total_tok_s"] / row["sent_offered_tok_s"]
    row["configured_time_s"] = max(r.num_prompts / r.request_rate for r in results)
    return row


def rate_columns(levels: list[tuple[float, int]], cycle: tuple[int, ...], row: dict[str, object]) -> dict[str, object]:
    """rate_values, rate_counts (levels of equal rate merged), adapter_rank_cycle, the aggregate and offered rates."""
    merged: dict[float, int] = {}
    for rate, count in levels:
        merged[rate] = merged.get(rate, 0) + count
    rates = sorted(merged)
    aggregate = math.fsum(r * merged[r] for r in rates)
    columns: dict[str, object] = {
        "rate_values": " ".join(f"{r:g}" for r in rates), "rate_counts": " ".join(str(merged[r]) for r in rates),
        "adapter_rank_cycle": " ".join(map(str, cycle)), "aggregate_rate_req_s": aggregate,
    }
    if row.get("pool_mean_output_tokens") is not None:
        columns["approx_offered_tok_s"] = aggregate * (row["pool_mean_input_tokens"] + row["pool_mean_output_tokens"])
    return columns


def _succeeded(result: BenchResult) -> list[bool]:
    errors = result.lists.get("errors")
    if errors is not None:
        return [not e for e in errors]
    return [t > 0 for t in result.lists["ttfts"]]


def _stats_from_lists(results: list[BenchResult]) -> dict[str, float | None]:
    ttft, tpot, itl = [], [], []
    for r in results:
        for ok, t, gaps, out in zip(_succeeded(r), r.lists["ttfts"], r.lists["itls"], r.lists["output_lens"], strict=True):
            if not ok:
                continue
            ttft.append(t * 1000)
            itl.extend(g * 1000 for g in gaps)
            if out > 1:
                tpot.append(math.fsum(gaps) * 1000 / (out - 1))
    row: dict[str, float | None] = {}
    for metric, values in (("ttft", ttft), ("tpot", tpot), ("itl", itl)):
        x = np.asarray(values or [0.0], np.float64)  # vLLM's statistics of nothing are those of [0]
        row.update({f"mean_{metric}_ms": float(x.mean()), f"median_{metric}_ms": float(np.median(x)),
                    f"p99_{metric}_ms": float(np.percentile(x, 99))})
    return row


def _weighted(values: list[float], weights: list[float]) -> float | None:
    total = math.fsum(weights)
    return math.fsum(v * w for v, w in zip(values, weights, strict=True)) / total if total > 0 else None
