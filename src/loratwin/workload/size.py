"""What a workload's arrival processes cost to draw or to summarise, counted before any array is made."""

from __future__ import annotations

from loratwin import budget
from loratwin.workload.spec import UnpredictableArrival, WorkloadSpec

__all__ = ["check_summary", "unpredictable_periods"]


def unpredictable_periods(workload: WorkloadSpec, duration_s: float) -> tuple[float, float]:
    """Periods of the unpredictable arrival processes over `duration_s`: in all, and of the adapter
    with the most (each period is a row of the arrays that draw or average them)."""
    counts = [duration_s / a.period_s + 1 for a in workload.arrivals() if isinstance(a, UnpredictableArrival)]
    return sum(counts), max(counts, default=0.0)


def check_summary(workload: WorkloadSpec, duration_s: float) -> None:
    """Refuse to summarise a workload whose expected rates would take more memory than the limit:
    its adapters, and the per-period arrays of its most divided unpredictable adapter."""
    _, most = unpredictable_periods(workload, duration_s)
    estimate = budget.layout_estimate(len(workload.adapters))
    budget.require(budget.Estimate(estimate.bytes + budget.PERIOD_AVERAGE_BYTES * most, estimate.seconds,
                                   f"{estimate.what} over {budget.format_window(duration_s)}"))
