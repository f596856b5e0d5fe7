"""Pick measured runs for wanted configurations: for each, the nearest measured run not yet picked.

Used to stand a table of measurements in for an experiment plan's runs (scripts/check_profile_fit.py):
a wanted configuration is anything with `served_adapters`, `max_loras`, `max_lora_rank`, `rate_values`
and optionally `rate_counts` and `adapter_rank_cycle` (WantedRun, or loratwin.lab.plan's PlannedRun).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loratwin.errors import InputError
from loratwin.validate.runs import RealRun

# A rank cycle that differs costs like a factor of 2 on one axis.
RANK_MIX_DISTANCE = 1.0


@dataclass(frozen=True)
class WantedRun:
    """A configuration an experiment would measure; `rate_counts` default to the rate levels
    assigned round-robin over the served adapters (as the reference runs did)."""

    served_adapters: int
    max_loras: int
    max_lora_rank: int
    rate_values: tuple[float, ...]
    adapter_rank_cycle: tuple[int, ...] = ()
    rate_counts: tuple[int, ...] = ()


def _numbers(value: Any, kind: type) -> tuple:
    # planned runs may hold these as "8 16 32" (the runs table's spelling) or as sequences
    if isinstance(value, str):
        value = value.split()
    return tuple(kind(v) for v in value or ())


def _log_distance(a: float, b: float) -> float:
    return abs(math.log2(max(a, 1e-9) / max(b, 1e-9)))


def aggregate_rate(served: int, rates: Sequence[float], counts: Sequence[int]) -> float:
    """Requests per second over all adapters; without counts, the levels go round-robin."""
    if not counts:
        counts = [served // len(rates) + (1 if i < served % len(rates) else 0) for i in range(len(rates))]
    return sum(r * c for r, c in zip(rates, counts, strict=True))


def distance(wanted: Any, run: RealRun) -> float:
    """Sum of |log2| ratios of served adapters, max_loras, max_lora_rank and the offered request rate,
    plus RANK_MIX_DISTANCE when the rank cycles differ."""
    rates = _numbers(wanted.rate_values, float)
    counts = _numbers(getattr(wanted, "rate_counts", ()), int)
    cycle = _numbers(getattr(wanted, "adapter_rank_cycle", ()), int)
    mix_gap = RANK_MIX_DISTANCE if cycle and sorted(set(cycle)) != sorted(set(run.rank_cycle)) else 0.0
    return (
        _log_distance(wanted.served_adapters, run.served_adapters)
        + _log_distance(wanted.max_loras, run.max_loras)
        + _log_distance(wanted.max_lora_rank, run.max_lora_rank)
        + _log_distance(aggregate_rate(wanted.served_adapters, rates, counts),
                        aggregate_rate(run.served_adapters, run.rate_values, run.rate_counts))
        + mix_gap
    )


def nearest_runs(wanted: Sequence[Any], runs: Sequence[RealRun]) -> list[RealRun]:
    """For each wanted configuration in order, the nearest run with measurements that no earlier
    one took (ties: the first in run_id order). Refuses more wanted configurations than runs."""
    pool = sorted((r for r in runs if r.has_metrics), key=lambda r: r.run_id)
    if len(wanted) > len(pool):
        raise InputError(f"{len(wanted)} configurations wanted, but only {len(pool)} measured runs to pick from")
    picked: list[RealRun] = []
    for w in wanted:
        best = min(pool, key=lambda r: distance(w, r))
        pool.remove(best)
        picked.append(best)
    return picked
