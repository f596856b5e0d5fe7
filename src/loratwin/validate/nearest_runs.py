"""Pick measured runs for wanted configurations: for each, the nearest measured run not yet picked.

Used to stand a table of measurements in for an experiment plan's runs (scripts/check_profile_fit.py):
a wanted configuration is anything with `served_adapters`, `max_loras`, `max_lora_rank`, `rate_values`
and optionally `adapter_rank_cycle` (WantedRun, or a planned run of `loratwin profile plan`).
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
    """A configuration an experiment would measure."""

    served_adapters: int
    max_loras: int
    max_lora_rank: int
    rate_values: tuple[float, ...]
    adapter_rank_cycle: tuple[int, ...] = ()


def _numbers(value: Any, kind: type) -> tuple:
    # planned runs may hold these as "8 16 32" (the runs table's spelling) or as sequences
    if isinstance(value, str):
        value = value.split()
    return tuple(kind(v) for v in value or ())


def _log_distance(a: float, b: float) -> float:
    return abs(math.log2(max(a, 1e-9) / max(b, 1e-9)))


def distance(wanted: Any, run: RealRun) -> float:
    """Sum of |log2| ratios of served adapters, max_loras, max_lora_rank and the sorted rate levels
    (their mean when the level counts differ), plus RANK_MIX_DISTANCE when the rank cycles differ."""
    rates = sorted(_numbers(wanted.rate_values, float))
    measured = sorted(run.rate_values)
    if len(rates) == len(measured) and rates:
        rate_gap = sum(_log_distance(a, b) for a, b in zip(rates, measured, strict=True)) / len(rates)
    else:
        rate_gap = _log_distance(sum(rates) / max(1, len(rates)), sum(measured) / max(1, len(measured)))
    cycle = _numbers(getattr(wanted, "adapter_rank_cycle", ()), int)
    mix_gap = RANK_MIX_DISTANCE if cycle and sorted(cycle) != sorted(run.rank_cycle) else 0.0
    return (
        _log_distance(wanted.served_adapters, run.served_adapters)
        + _log_distance(wanted.max_loras, run.max_loras)
        + _log_distance(wanted.max_lora_rank, run.max_lora_rank)
        + rate_gap
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
