"""What a run produced: totals, per adapter, per request, time series; JSON and Parquet output."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loratwin.profiles.serving import conditions as serving_conditions_of
from loratwin.twin import engine
from loratwin.twin.delivery import NONE, Blackouts, delivered, first_use_blackouts, scrape_blackouts, union
from loratwin.twin.lora_info import lora_info_series

if TYPE_CHECKING:
    from collections.abc import Iterable

    from loratwin.profiles import Profile
    from loratwin.slo import Slo
    from loratwin.twin.config import ResolvedServer
    from loratwin.twin.engine import EngineOutput
    from loratwin.workload import RequestTable, WorkloadSpec

# what RunResult.write puts in a results folder (summary first)
RESULT_FILES = ("summary.json", "requests.parquet", "adapters.parquet", "timeseries.parquet", "steps.parquet")
NS_PER_S = 1e9
NS_PER_MS = 1e6
# Requests that arrive this close to the end of the window cannot be expected to finish; the
# per-adapter starvation check leaves them out so that a window's edge does not flag an adapter.
ADAPTER_CHECK_TAIL_FRACTION = 0.05


@dataclass
class RunResult:
    """One simulated run.

    config: the resolved inputs; summary: run totals (units in the key names); adapters: one row
    per adapter; requests / timeseries / steps: column arrays (for Parquet and reports).
    """

    config: dict[str, Any]
    summary: dict[str, Any]
    adapters: list[dict[str, Any]]
    requests: dict[str, np.ndarray] = field(repr=False)
    timeseries: dict[str, np.ndarray] = field(repr=False)
    steps: dict[str, np.ndarray] = field(repr=False)

    @property
    def starved(self) -> bool:
        return bool(self.summary["starved"])

    @property
    def total_tok_s(self) -> float:
        return float(self.summary["total_tok_s"])

    @property
    def starved_adapters(self) -> list[str]:
        return [a["adapter_id"] for a in self.adapters if a["starved"]]

    @property
    def mean_ttft_s(self) -> float | None:
        """Mean time to first token (s); None when no request got one."""
        return _seconds(self.summary["mean_ttft_ms"])

    @property
    def p99_ttft_s(self) -> float | None:
        return _seconds(self.summary["p99_ttft_ms"])

    @functools.cached_property
    def idle_start_ttft_s(self) -> float | None:
        """`idle_start_ttft_s` of this run's requests, leaving out those sent in the window's last
        tail (as the per-adapter starvation check does: most of them cannot finish)."""
        return idle_start_ttft_s(self.requests, self.config["duration_s"] * (1 - ADAPTER_CHECK_TAIL_FRACTION))

    @property
    def first_token_wait_s(self) -> float | None:
        """What a limit on the wait for a first token holds a run to: the larger of the mean TTFT
        of the requests that found their adapter idle (the wait for a place in the batch) and of
        all requests (the queue for KV admission meets every one). None when neither is known."""
        return max((t for t in (self.idle_start_ttft_s, self.mean_ttft_s) if t is not None), default=None)

    def goodput_req_s(self, slos: Iterable[Slo]) -> float:
        """Completed requests per second of the window that met every SLO on their own (`goodput_req_s`)."""
        return goodput_req_s(self.requests, slos, float(self.config["duration_s"]))

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "summary": self.summary, "adapters": self.adapters}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, default=_json_default)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write summary.json, requests.parquet, adapters.parquet, timeseries.parquet, steps.parquet into
        `out_dir`, whole or not at all (see loratwin.files.written_whole: a folder holding anything but a
        previous result is refused)."""
        from loratwin.files import written_whole

        with written_whole(out_dir, RESULT_FILES) as tmp:
            self.write_files(tmp)
        return [Path(out_dir) / name for name in RESULT_FILES]

    def write_files(self, folder: Path) -> None:
        """The files of `write`, written into the existing `folder` one by one (`write` makes it whole)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = {
            "requests": pa.table(self.requests),
            "adapters": pa.Table.from_pylist(self.adapters),
            "timeseries": pa.table(self.timeseries),
            "steps": pa.table(self.steps),
        }
        (folder / "summary.json").write_text(self.to_json())
        for name, table in tables.items():
            pq.write_table(table, folder / f"{name}.parquet")


def idle_start_ttft_s(requests: dict[str, np.ndarray], sent_before_s: float | None = None) -> float | None:
    """Mean TTFT (s) of the requests sent while their adapter had no other request unfinished: the
    ones that must win a place in the batch (one of max_loras) before they run. On a GPU whose
    places are all taken this is the wait for a place; the cost-model check predicts it.
    `sent_before_s` leaves out requests sent later (near a window's end most cannot finish).
    None when no such request got its first token."""
    sent = np.asarray(requests["sent_s"], np.float64)
    if sent.size == 0:
        return None
    _, adapter = np.unique(requests["adapter_id"], return_inverse=True)
    finish = np.asarray(requests["finish_s"], np.float64)
    horizon = float(np.nanmax(np.concatenate([sent, finish]))) + 1.0
    finish = np.where(np.isnan(finish), horizon, finish)  # unfinished: busy to the end
    order = np.lexsort((sent, adapter))
    a, s, f = adapter[order], sent[order], finish[order]
    # busy-until of each adapter so far: a running maximum of finish times within each adapter,
    # kept apart by an offset per adapter larger than any time
    offset = a * (2.0 * horizon)
    busy_until = np.maximum.accumulate(offset + f) - offset
    first = np.concatenate([[True], a[1:] != a[:-1]])
    idle = first | (s > np.concatenate([[-np.inf], busy_until[:-1]]))
    ttft = np.asarray(requests["ttft_ms"], np.float64)[order] / 1000
    keep = idle & ~np.isnan(ttft)
    if sent_before_s is not None:
        keep &= s < sent_before_s
    return float(ttft[keep].mean()) if keep.any() else None


def goodput_req_s(requests: dict[str, np.ndarray], slos: Iterable[Slo], duration_s: float) -> float:
    """Goodput as `vllm bench serve --goodput` counts it: completed requests per second of the window
    whose own latencies meet every SLO. A request's TTFT is held to the TTFT SLOs (ttft_p99 and
    ttft_mean alike) and its own TPOT, (finish - first token) / (output tokens - 1), to tpot_p99 and
    to itl_p99 (its mean inter-token gap: the gaps of one request are not kept); a request of one
    output token has no TPOT and meets those (vLLM counts its TPOT as 0)."""
    good = np.asarray(requests["completed"], bool).copy()
    ttft = np.asarray(requests["ttft_ms"], np.float64)
    tpot = np.nan_to_num(np.asarray(requests["tpot_ms"], np.float64), nan=0.0)  # one token: no TPOT (0)
    for slo in slos:
        value = ttft if slo.key.startswith("ttft") else tpot
        good &= value <= slo.limit_ms
    return float(good.sum()) / duration_s


def _request_tpot_ms(first_ns: np.ndarray, finish_ns: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Each request's TPOT, (finish - first token) / (output tokens - 1), in ms; NaN where undefined."""
    multi = (first_ns >= 0) & (finish_ns >= 0) & (output > 1)
    tpot = np.full(len(output), np.nan)
    tpot[multi] = (finish_ns[multi] - first_ns[multi]) / NS_PER_MS / (output[multi] - 1)
    return tpot


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else float(ms) / 1000


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def ttft_all_sent_ms(sent_ns: np.ndarray, seen_first_ns: np.ndarray, duration_ns: int) -> tuple[np.ndarray, int]:
    """The TTFT (ms) of every request sent before the window's last ADAPTER_CHECK_TAIL_FRACTION, and
    how many of them had no first token by its end.

    One still waiting at the end counts its wait so far (at least that last part of the window): a
    lower bound of what a client that waits for every request (as `vllm bench serve` does) would
    report. The TTFT over completed requests alone leaves out exactly the requests a starved adapter
    never gets served, so a GPU that never serves its quiet adapters looks fast; the TTFT SLOs judge
    this one instead. Requests sent in the last part are left out, as from the per-adapter check:
    the window's edge, not the server, would cut their waits short."""
    sent = (sent_ns >= 0) & (sent_ns < duration_ns * (1 - ADAPTER_CHECK_TAIL_FRACTION))
    got_first = (seen_first_ns >= 0) & (seen_first_ns <= duration_ns)
    waited = np.where(got_first, seen_first_ns - sent_ns, duration_ns - sent_ns)[sent] / NS_PER_MS
    return waited, int((sent & ~got_first).sum())


def _stats_ms(values_ms: np.ndarray, prefix: str) -> dict[str, float | None]:
    if values_ms.size == 0:
        return {f"mean_{prefix}_ms": None, f"p50_{prefix}_ms": None, f"p99_{prefix}_ms": None}
    return {
        f"mean_{prefix}_ms": float(values_ms.mean()),
        f"p50_{prefix}_ms": float(np.percentile(values_ms, 50)),
        f"p99_{prefix}_ms": float(np.percentile(values_ms, 99)),
    }


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[order][min(idx, len(order) - 1)])


def _itl_stats(out: EngineOutput, completed: np.ndarray, blackouts: Blackouts = NONE) -> dict[str, float | None]:
    """Inter-token gaps pooled over completed requests, from the engine's streak log.

    A streak [a, b] of consecutive steps in which a request emitted a token contributes the
    durations of steps a+1..b; gaps between streaks (after a preemption) were logged one by one.
    Steps are taken as the client sees them (twin.delivery): the tokens of steps ending in one
    blackout arrive together when it ends, the first after a long gap, the others right after it.
    Gaps after a preemption are kept as the engine made them (their ends are not logged).
    With blackouts, also the mean gap as the engine emits them, before delivery (`engine_mean_itl_ms`,
    what the step-time fit equates; None without blackouts): the same weights, the engine's steps.
    """
    step_end, seg_req, seg_a, seg_b, gap_req, gap_ns = (
        out.step_end, out.seg_req, out.seg_a, out.seg_b, out.gap_req, out.gap_ns
    )
    n_steps = step_end.shape[0]
    if n_steps == 0:
        return {**_stats_ms(np.empty(0), "itl"), "engine_mean_itl_ms": None}
    keep = completed[seg_req]
    diff = np.zeros(n_steps + 1, np.int64)
    np.add.at(diff, seg_a[keep] + 1, 1)
    np.add.at(diff, seg_b[keep] + 1, -1)
    weights = np.cumsum(diff)[:n_steps].astype(np.float64)
    irregular = gap_ns[completed[gap_req]].astype(np.float64)
    w = np.concatenate([weights, np.ones(irregular.size)])
    if w.sum() <= 0:
        return {**_stats_ms(np.empty(0), "itl"), "engine_mean_itl_ms": None}

    def gaps_ms(ends: np.ndarray) -> np.ndarray:
        return np.concatenate([np.diff(ends, prepend=ends[0]).astype(np.float64), irregular]) / NS_PER_MS

    values = gaps_ms(delivered(step_end, blackouts))
    return {
        "mean_itl_ms": float((values * w).sum() / w.sum()),
        "p50_itl_ms": _weighted_quantile(values, w, 0.5),
        "p99_itl_ms": _weighted_quantile(values, w, 0.99),
        "engine_mean_itl_ms": float((gaps_ms(step_end) * w).sum() / w.sum()) if blackouts.start_ns.size else None,
    }


def build_result(
    out: EngineOutput,
    *,
    workload: WorkloadSpec,
    requests: RequestTable,
    profile: Profile,
    server: ResolvedServer,
    duration_s: float,
    seed: int,
    requested_output_tokens: np.ndarray,
    lengths_name: str,
    starvation_threshold: float,
) -> RunResult:
    """Totals count the tokens generated by completed requests; the offered load counts what the
    requests asked for (prompt + requested output), as the reference benchmark's ideal throughput."""
    counters, sent_ns, first_ns, finish_ns = out.counters, out.sent_ns, out.first_ns, out.finish_ns
    generated, preempted = out.generated, out.preempted
    adapter_gpu_loads, adapter_disk_loads = out.adapter_gpu_loads, out.adapter_disk_loads
    step_end, step_batch, step_adapters, step_kv = out.step_end, out.step_batch, out.step_adapters, out.step_kv_blocks
    ts_t, ts_running, ts_waiting, ts_kv = out.ts_t, out.ts_running, out.ts_waiting, out.ts_kv

    duration_ns = int(round(duration_s * NS_PER_S))
    prompt = requests.prompt_tokens.astype(np.int64)
    output = requests.output_tokens.astype(np.int64)
    completed = (finish_ns >= 0) & (finish_ns <= duration_ns)
    sent = sent_ns >= 0
    n_adapters = len(workload.adapters)

    in_tok = int(prompt[completed].sum())
    out_tok = int(output[completed].sum())
    requested = requested_output_tokens.astype(np.int64)
    offered_tok = int((prompt + requested).sum())
    total_tok_s = (in_tok + out_tok) / duration_s
    offered_tok_s = offered_tok / duration_s
    ratio = total_tok_s / offered_tok_s if offered_tok_s > 0 else 1.0

    # latencies as the client sees them (twin.delivery); the engine's times decide what completed
    gauge = lora_info_series(step_end, sent_ns, first_ns, finish_ns, requests.adapter, n_adapters) \
        if profile.tails.gauge_on else None
    scrapes = scrape_blackouts(profile.tails, step_end, step_batch, n_adapters,
                               max(duration_ns, int(counters[engine.CNT_END_NS])), seed, gauge)
    first_use = first_use_blackouts(profile.tails, sent_ns, requests.adapter, scrapes)
    blackouts = union(scrapes, first_use)
    # a request sent during a blackout reaches the engine when it ends: its tokens come that much
    # later (the engine admitted it on arrival; what that wait does to the queue is left out)
    held = np.where(sent_ns >= 0, delivered(sent_ns, blackouts) - sent_ns, 0)
    seen_first = np.where(first_ns >= 0, delivered(first_ns + held, blackouts), -1)
    seen_finish = np.where(finish_ns >= 0, delivered(finish_ns + held, blackouts), -1)
    ttft_ms = (seen_first[completed] - sent_ns[completed]) / NS_PER_MS
    waited_ms, still_waiting = ttft_all_sent_ms(sent_ns, seen_first, duration_ns)
    request_tpot_ms = _request_tpot_ms(seen_first, seen_finish, output)
    tpot_ms = request_tpot_ms[completed & (output > 1)]

    n_steps = int(counters[engine.CNT_STEPS])
    num_blocks = server.num_blocks
    summary: dict[str, Any] = {
        "input_tok_s": in_tok / duration_s,
        "output_tok_s": out_tok / duration_s,
        "total_tok_s": total_tok_s,
        "request_throughput_req_s": int(completed.sum()) / duration_s,
        **_stats_ms(ttft_ms, "ttft"),
        # what the TTFT SLOs judge: every request sent, those never served counted too
        "mean_ttft_all_sent_ms": float(waited_ms.mean()) if waited_ms.size else None,
        "p99_ttft_all_sent_ms": float(np.percentile(waited_ms, 99)) if waited_ms.size else None,
        "no_first_token_at_end": still_waiting,
        **_itl_stats(out, completed, blackouts),  # and engine_mean_itl_ms, before delivery
        **_stats_ms(tpot_ms, "tpot"),
        "arrived": int(len(prompt)),
        "sent": int(sent.sum()),
        "completed": int(completed.sum()),
        "unfinished": int(len(prompt) - completed.sum()),
        "preemptions": int(counters[engine.CNT_PREEMPTIONS]),
        "adapter_loads_cpu_to_gpu": int(counters[engine.CNT_GPU_LOADS]),
        "adapter_loads_disk_to_cpu": int(counters[engine.CNT_DISK_LOADS]),
        "steps": n_steps,
        "offered_tok_s": offered_tok_s,
        "throughput_over_offered": ratio,
        "starvation_threshold": starvation_threshold,
        "starved": bool(1.0 - ratio >= starvation_threshold),
        "mean_running": float(ts_running.mean()) if ts_running.size else 0.0,
        "mean_waiting": float(ts_waiting.mean()) if ts_waiting.size else 0.0,
        "max_waiting": int(ts_waiting.max()) if ts_waiting.size else 0,
        "kv_usage_mean": float(ts_kv.mean() / num_blocks) if ts_kv.size else 0.0,
        "kv_usage_max": float(step_kv.max() / num_blocks) if step_kv.size else 0.0,
        "mean_scrape_blackout_ms": scrapes.mean_ms,
        "first_use_stalls": int(first_use.start_ns.size),
    }

    # per adapter
    adapter = requests.adapter.astype(np.int64)
    cutoff_ns = duration_ns * (1 - ADAPTER_CHECK_TAIL_FRACTION)
    early = np.round(requests.arrival_s * NS_PER_S) < cutoff_ns
    arrived_a = np.bincount(adapter, minlength=n_adapters)
    completed_a = np.bincount(adapter[completed], minlength=n_adapters)
    tok = prompt + output
    asked = prompt + requested
    served_tok_a = np.bincount(adapter[completed], weights=tok[completed], minlength=n_adapters)
    offered_tok_a = np.bincount(adapter, weights=asked, minlength=n_adapters)
    early_offered = np.bincount(adapter[early], weights=asked[early], minlength=n_adapters)
    early_served = np.bincount(adapter[early & completed], weights=tok[early & completed], minlength=n_adapters)
    ttft_sum = np.bincount(adapter[completed], weights=ttft_ms, minlength=n_adapters)
    rows = []
    for i, spec in enumerate(workload.adapters):
        shortfall = 1.0 - early_served[i] / early_offered[i] if early_offered[i] > 0 else 0.0
        rows.append(
            {
                "adapter_id": spec.id,
                "rank": spec.rank,
                "rate_req_s": spec.rate_req_s,
                "arrived": int(arrived_a[i]),
                "completed": int(completed_a[i]),
                "completion_ratio": float(completed_a[i] / arrived_a[i]) if arrived_a[i] else 1.0,
                "offered_tok_s": float(offered_tok_a[i] / duration_s),
                "total_tok_s": float(served_tok_a[i] / duration_s),
                "mean_ttft_ms": float(ttft_sum[i] / completed_a[i]) if completed_a[i] else None,
                "loads_cpu_to_gpu": int(adapter_gpu_loads[i]),
                "loads_disk_to_cpu": int(adapter_disk_loads[i]),
                "starved": bool(shortfall >= starvation_threshold),
            }
        )
    summary["starved_adapters"] = sum(r["starved"] for r in rows)

    adapter_ids = np.array([a.id for a in workload.adapters], dtype=object)

    def _times(ns: np.ndarray) -> np.ndarray:
        return np.where(ns >= 0, ns / NS_PER_S, np.nan)

    request_cols = {
        "request_id": np.arange(len(prompt), dtype=np.int64),
        "adapter_id": adapter_ids[adapter] if len(adapter) else np.empty(0, dtype=object),
        "arrival_s": requests.arrival_s.astype(np.float64),
        "sent_s": _times(sent_ns),
        "prompt_tokens": prompt,
        "output_tokens": output,
        "requested_output_tokens": requested,
        "first_token_s": _times(first_ns),
        "finish_s": _times(finish_ns),
        "completed": completed,
        "ttft_ms": np.where(first_ns >= 0, (seen_first - sent_ns) / NS_PER_MS, np.nan),
        # as the client sees it (delivery times, like ttft_ms); NaN for an unfinished or one-token request
        "tpot_ms": request_tpot_ms,
        "generated_tokens": generated.astype(np.int64),
        "preemptions": preempted.astype(np.int64),
    }
    timeseries = {
        "t_s": ts_t / NS_PER_S,
        "running": ts_running.astype(np.int64),
        "waiting": ts_waiting.astype(np.int64),
        "kv_usage": ts_kv / num_blocks,
    }
    steps = {
        "end_s": step_end / NS_PER_S,
        "batch": step_batch.astype(np.int64),
        "adapters": step_adapters.astype(np.int64),
        "kv_blocks": step_kv.astype(np.int64),
        "prefill_tokens": out.step_prefill.astype(np.int64),
        "context_tokens": out.step_context.astype(np.int64),
        "overhead_s": out.step_overhead / NS_PER_S,
    }
    config = {
        "profile": profile.name,
        "gpu": profile.gpu,
        "engine": profile.engine,
        "server": {
            "max_loras": server.max_loras,
            "max_cpu_loras": server.max_cpu_loras,
            "max_lora_rank": server.max_lora_rank,
            "max_num_seqs": server.max_num_seqs,
            "max_num_batched_tokens": server.max_num_batched_tokens,
            "client_max_waiting": server.client_max_waiting,
            "kv_cache_tokens": server.kv_cache_tokens,
        },
        "workload": {
            "served_adapters": n_adapters,
            "aggregate_rate_req_s": workload.aggregate_rate_req_s,
            "ranks": sorted({a.rank for a in workload.adapters}),
            "request_lengths": lengths_name,
        },
        # what the client sees depends on them (--warm, --metrics-poll; loratwin.profiles.serving)
        "serving": serving_conditions_of(profile),
        "duration_s": duration_s,
        "seed": seed,
    }
    return RunResult(
        config=config,
        summary=summary,
        adapters=rows,
        requests=request_cols,
        timeseries=timeseries,
        steps=steps,
    )
