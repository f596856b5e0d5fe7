"""A summary of a workload: what it asks of a replica, before any simulation."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from loratwin.errors import InputError
from loratwin.workload.arrivals import schedule_pieces
from loratwin.workload.requests import RequestTable
from loratwin.workload.size import check_summary
from loratwin.workload.spec import ARRIVAL_KINDS, ShareGPTLengths, UnpredictableArrival, WorkloadSpec
from loratwin.workload.trace import replay_window, with_trace_rates
from loratwin.workload.unpredictable import expected_multipliers

__all__ = ["describe_trace", "describe_workload", "expected_mean_rates"]


def _mean_factor(arrival: object, duration_s: float) -> float:
    """An arrival process's expected rate over [0, duration_s) as a multiple of the adapter's rate."""
    schedule_starts, schedule_ends, scales = schedule_pieces(getattr(arrival, "schedule", None), duration_s)
    if not isinstance(arrival, UnpredictableArrival):
        return float((scales * (schedule_ends - schedule_starts)).sum() / duration_s)
    # the walk's expected multiplier per period, times the schedule's scale, over their common
    # pieces; once the walk settles, its last expectation holds to the end
    expected_by_period = expected_multipliers(math.ceil(duration_s / arrival.period_s))
    period_starts = np.arange(len(expected_by_period)) * arrival.period_s
    points = np.union1d(period_starts, schedule_starts)
    lengths = np.diff(np.append(points, duration_s))
    expected = expected_by_period[np.searchsorted(period_starts, points, side="right") - 1]
    scale = scales[np.searchsorted(schedule_starts, points, side="right") - 1]
    return float((expected * scale * lengths).sum() / duration_s)


def expected_mean_rates(workload: WorkloadSpec, duration_s: float) -> np.ndarray:
    """Each adapter's expected arrival rate averaged over [0, duration_s), schedules and drift included."""
    factors: dict[object, float] = {}  # adapters mostly share their process: one computation each
    for arrival in workload.arrivals():
        if arrival not in factors:
            factors[arrival] = _mean_factor(arrival, duration_s)
    rates = np.array([adapter.rate_req_s for adapter in workload.adapters], dtype=np.float64)
    return rates * np.array([factors[arrival] for arrival in workload.arrivals()])


def describe_workload(
    workload: WorkloadSpec, duration_s: float = 3600, model_name: str | None = None
) -> dict[str, Any]:
    """Adapters, rates, rank and arrival-process mix, and the load offered over `duration_s` seconds.

    Rates under "rate_req_s" are the adapters' base rates; "expected_aggregate_rate_req_s" averages
    over the run, so it includes rate schedules and the upward drift of the expected rate of
    unpredictable arrivals (bounded: their rates stay within 1/7.5 and 7.5 times the base). Offered
    tokens use the length spec's mean prompt and output lengths.
    """
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float, np.integer, np.floating)):
        raise InputError(f"duration_s: must be a number of seconds > 0, got {duration_s!r}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"duration_s: must be a finite number of seconds > 0, got {duration_s!r}")
    duration_s = float(duration_s)
    check_summary(workload, duration_s)

    rates = np.array([adapter.rate_req_s for adapter in workload.adapters], dtype=np.float64)
    expected = expected_mean_rates(workload, duration_s)
    expected_total = float(expected.sum())
    arrivals = workload.arrivals()
    kinds = Counter(arrival.kind for arrival in arrivals)
    busiest = np.sort(rates)[::-1][: max(1, math.ceil(len(rates) / 10))]
    total = workload.aggregate_rate_req_s

    if isinstance(workload.lengths, ShareGPTLengths):
        mean_prompt, mean_output = workload.lengths.means(model_name)
    else:
        mean_prompt, mean_output = workload.lengths.mean_prompt_tokens, workload.lengths.mean_output_tokens
    tokens_per_request = float(mean_prompt) + float(mean_output)
    return {
        "duration_s": duration_s,
        "adapters": len(rates),
        "idle_adapters": int((rates == 0).sum()),
        "rate_req_s": {
            "min": float(rates.min()),
            "median": float(np.median(rates)),
            "mean": float(rates.mean()),
            "max": float(rates.max()),
        },
        # How skewed popularity is: 0.1 when all adapters are equally busy.
        "busiest_tenth_rate_share": float(busiest.sum() / total) if total > 0 else None,
        "aggregate_rate_req_s": total,
        "expected_aggregate_rate_req_s": expected_total,
        "expected_requests": expected_total * duration_s,
        "ranks": dict(sorted(Counter(adapter.rank for adapter in workload.adapters).items())),
        "arrival_processes": {kind: kinds[kind] for kind in ARRIVAL_KINDS if kinds[kind]},
        "scheduled_adapters": sum(getattr(arrival, "schedule", None) is not None for arrival in arrivals),
        "lengths": {
            "name": getattr(workload.lengths, "name", str(workload.lengths)),
            "mean_prompt_tokens": float(mean_prompt) if mean_prompt is not None else None,
            "mean_output_tokens": float(mean_output) if mean_output is not None else None,
        },
        "offered_tok_s": expected_total * tokens_per_request if tokens_per_request is not None else None,
    }


def describe_trace(workload: WorkloadSpec, requests: RequestTable, duration_s: float | None = None) -> dict[str, Any]:
    """`describe_workload` of a trace over `duration_s` (default: the trace's own window): rates,
    lengths and offered load are those of the requests it holds in the window, whatever the `rate`
    column of adapters.csv says (that rate is kept under "trace" as "rate_column_req_s")."""
    window, note = replay_window(requests, duration_s)
    summary = describe_workload(with_trace_rates(workload, requests, window), window)
    inside = requests.arrival_s < window
    prompt, output = requests.prompt_tokens[inside], requests.output_tokens[inside]
    mean_prompt = float(prompt.mean()) if prompt.size else None
    mean_output = float(output.mean()) if output.size else None
    summary["lengths"] = {"name": "replayed from the trace", "mean_prompt_tokens": mean_prompt, "mean_output_tokens": mean_output}
    summary["offered_tok_s"] = float(prompt.sum(dtype=np.int64) + output.sum(dtype=np.int64)) / window
    summary["trace"] = {
        "requests": len(requests),
        "span_s": float(requests.arrival_s[-1] - requests.arrival_s[0]) if len(requests) else 0.0,
        "mean_prompt_tokens": mean_prompt,
        "mean_output_tokens": mean_output,
        "rate_column_req_s": workload.aggregate_rate_req_s,
        "note": note,
    }
    return summary
