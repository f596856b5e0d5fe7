"""A summary of a workload: what it asks of a replica, before any simulation."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from loratwin.errors import InputError
from loratwin.workload.arrivals import UNPREDICTABLE_RATE_FACTOR, schedule_pieces
from loratwin.workload.size import check_summary
from loratwin.workload.spec import ARRIVAL_KINDS, ShareGPTLengths, UnpredictableArrival, WorkloadSpec

__all__ = ["describe_workload", "expected_mean_rates"]

# Each period multiplies the rate by 1.5 or 1 / 1.5 with equal odds: the expected rate grows by
# this factor per period even though the median stays at the base rate.
_UNPREDICTABLE_DRIFT = (UNPREDICTABLE_RATE_FACTOR + 1.0 / UNPREDICTABLE_RATE_FACTOR) / 2.0


def expected_mean_rates(workload: WorkloadSpec, duration_s: float) -> np.ndarray:
    """Each adapter's expected arrival rate averaged over [0, duration_s), schedules and drift included."""
    factors = []
    for arrival in workload.arrivals():
        if isinstance(arrival, UnpredictableArrival):
            starts = np.arange(math.ceil(duration_s / arrival.period_s)) * arrival.period_s
            lengths = np.minimum(starts + arrival.period_s, duration_s) - starts
            drift = _UNPREDICTABLE_DRIFT ** np.arange(len(starts), dtype=np.float64)
            factors.append(float((drift * lengths).sum() / duration_s))
        else:
            starts, ends, scales = schedule_pieces(arrival.schedule, duration_s)
            factors.append(float((scales * (ends - starts)).sum() / duration_s))
    rates = np.array([adapter.rate_req_s for adapter in workload.adapters], dtype=np.float64)
    return rates * np.array(factors)


def describe_workload(
    workload: WorkloadSpec, duration_s: float = 3600, model_name: str | None = None
) -> dict[str, Any]:
    """Adapters, rates, rank and arrival-process mix, and the load offered over `duration_s` seconds.

    Rates under "rate_req_s" are the adapters' base rates; "expected_aggregate_rate_req_s" averages
    over the run, so it includes rate schedules and the upward drift of the expected rate of
    unpredictable arrivals. Offered tokens use the length spec's mean prompt and output lengths.
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
