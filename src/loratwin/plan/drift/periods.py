"""A drifting workload, period by period: the adapters (rank, rate) each period of `period_s`
seconds offers.

Three sources:
- a rates CSV, header `period,adapter_id,rank,rate`: period an integer >= 0 (period k starts at
  k x period_s; a period with no rows is skipped), rate in req/s; an adapter keeps its rank in every
  period; an adapter absent from a period does not exist then (it vanishes, and may come back);
- a trace directory (`trace.csv` + `adapters.csv`, see loratwin.workload.load_trace): each period's
  rate of an adapter is the requests the trace sends it in that period over `period_s` (0 when it
  sends none: the adapter stays served); the trace is cut into whole periods from 0 s, a last
  partial period kept when it is at least half a period long;
- a workload YAML (e.g. `arrival: unpredictable`, whose rates change every 300 s): its requests
  drawn over `duration_s` with `seed`, then cut into periods as a trace is.
Within a period, arrivals are Poisson at its rates (the drift is in the rates from period to period).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loratwin import budget
from loratwin.errors import InputError
from loratwin.plan.inputs import read_adapter_rows
from loratwin.workload import (
    AdapterSpec,
    PoissonArrival,
    RequestTable,
    WorkloadSpec,
    generate_requests,
    load_trace,
    load_workload_yaml,
)
from loratwin.workload.spec import MAX_RATE_REQ_S, RATE_WORDS, check_adapter_id

RATES_HEADER = ("period", "adapter_id", "rank", "rate")


@dataclass(frozen=True)
class Period:
    index: int
    start_s: float
    duration_s: float
    workload: WorkloadSpec


def read_periods(path: str | Path, period_s: float, duration_s: float = 3600.0, seed: int = 0,
                 model_name: str | None = None) -> list[Period]:
    """The periods of a rates CSV, a trace directory or a workload YAML (its requests drawn over
    `duration_s` with `seed`, lengths from `model_name`'s table) (module docstring), in time order."""
    if isinstance(period_s, bool) or not isinstance(period_s, (int, float)) or not math.isfinite(period_s) \
            or period_s <= 0:
        raise InputError(f"--period must be a number of seconds > 0, got {period_s!r}")
    path = Path(path)
    if path.is_dir():
        workload, requests = load_trace(path)
        return _cut(workload, requests, float(period_s))
    if path.suffix.lower() in (".yaml", ".yml"):
        return _drawn_periods(path, float(period_s), duration_s, seed, model_name)
    if path.suffix.lower() != ".csv":
        if not path.exists():
            raise InputError(f"{path} does not exist; expected a CSV {','.join(RATES_HEADER)}, a workload YAML "
                             "or a trace directory")
        raise InputError(f"{path}: expected a CSV {','.join(RATES_HEADER)}, a workload YAML or a trace directory")
    return _csv_periods(path, float(period_s))


def _csv_periods(path: Path, period_s: float) -> list[Period]:
    rows = read_adapter_rows(path, f"a rates file (CSV with the header {','.join(RATES_HEADER)})", _rows)
    if not rows:
        raise InputError(f"{path}: no rows; expected at least one after the header")
    return [Period(k, k * period_s, period_s, WorkloadSpec(adapters=tuple(adapters)))
            for k, adapters in sorted(rows.items())]


def _rows(path: Path, reader) -> dict[int, list[AdapterSpec]]:
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != RATES_HEADER:
        raise InputError(f"{path} line 1: expected the header {','.join(RATES_HEADER)}, got {','.join(header or [])!r}")
    periods: dict[int, list[AdapterSpec]] = {}
    seen: dict[tuple[int, str], int] = {}
    ranks: dict[str, tuple[int, int]] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path} line {line}"
        if len(row) != len(RATES_HEADER):
            raise InputError(f"{where}: expected {len(RATES_HEADER)} columns ({','.join(RATES_HEADER)}), got {len(row)}")
        period_text, adapter_id, rank_text, rate_text = (c.strip() for c in row)
        period = _integer(period_text, where, "period", "an integer >= 0", 0)
        check_adapter_id(adapter_id, where)
        rank = _integer(rank_text, where, "rank", "an integer > 0", 1)
        try:
            rate = float(rate_text)
        except ValueError:
            rate = math.nan
        if not (0 <= rate <= MAX_RATE_REQ_S):
            raise InputError(f"{where}: rate must be {RATE_WORDS}, got {rate_text!r}")
        if (period, adapter_id) in seen:
            raise InputError(f"{where}: adapter {adapter_id!r} twice in period {period} (first on line "
                             f"{seen[period, adapter_id]})")
        seen[period, adapter_id] = line
        first = ranks.setdefault(adapter_id, (rank, line))
        if first[0] != rank:
            raise InputError(f"{where}: adapter {adapter_id!r} has rank {rank}, but rank {first[0]} on line {first[1]}; "
                             "an adapter keeps its rank")
        periods.setdefault(period, []).append(AdapterSpec(id=adapter_id, rank=rank, rate_req_s=rate))
    return periods


def _integer(text: str, where: str, name: str, words: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise InputError(f"{where}: {name} must be {words}, got {text!r}")
    return value


def _drawn_periods(path: Path, period_s: float, duration_s: float, seed: int, model_name: str | None) -> list[Period]:
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or not math.isfinite(duration_s) \
            or duration_s < period_s:
        raise InputError(f"--duration must be a number of seconds >= --period ({period_s:g}), got {duration_s!r}")
    workload = load_workload_yaml(path)
    budget.require(budget.simulation_estimate(len(workload.adapters),
                                              budget.requests_bound(workload.aggregate_rate_req_s * duration_s),
                                              duration_s, window_from="--duration"))
    requests = generate_requests(workload, float(duration_s), seed, model_name=model_name)
    return _cut(workload, requests, period_s, end=float(duration_s))


def _cut(workload: WorkloadSpec, requests: RequestTable, period_s: float, end: float | None = None) -> list[Period]:
    """Whole periods of `period_s` from 0 s up to `end` (default: the last arrival), a tail under
    half a period joined to the last; each adapter's rate: its requests in the period over its length."""
    if end is None:
        end = float(requests.arrival_s[-1]) if len(requests) else 0.0
    count = max(1, math.floor(end / period_s + 0.5))
    budget.require(budget.drift_periods_estimate(count, len(workload.adapters), period_s))
    which = np.minimum((requests.arrival_s // period_s).astype(np.int64), count - 1)
    counts = np.zeros((count, len(workload.adapters)), dtype=np.int64)
    np.add.at(counts, (which, requests.adapter), 1)
    periods = []
    for k in range(count):
        duration = period_s if k < count - 1 else max(period_s, end - k * period_s)
        # the period's rates are what drifted: within it, arrivals are Poisson at them
        adapters = tuple(a.model_copy(update={"rate_req_s": float(c / duration), "arrival": None})
                         for a, c in zip(workload.adapters, counts[k].tolist(), strict=True))
        spec = workload.model_copy(update={"adapters": adapters, "arrival": PoissonArrival()})
        periods.append(Period(k, k * period_s, duration, spec))
    return periods
