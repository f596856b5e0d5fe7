"""A drifting workload, period by period: the adapters (rank, rate) each period of `period_s`
seconds offers.

Two sources:
- a rates CSV, header `period,adapter_id,rank,rate`: period an integer >= 0 (period k starts at
  k x period_s; a period with no rows is skipped), rate in req/s; an adapter keeps its rank in every
  period; an adapter absent from a period does not exist then (it vanishes, and may come back);
- a trace directory (`trace.csv` + `adapters.csv`, see loratwin.workload.load_trace): each period's
  rate of an adapter is the requests the trace sends it in that period over `period_s` (0 when it
  sends none: the adapter stays served); the trace is cut into whole periods from 0 s, a last
  partial period kept when it is at least half a period long.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loratwin import budget
from loratwin.errors import InputError
from loratwin.textfile import read_user_text
from loratwin.workload import AdapterSpec, WorkloadSpec, load_trace
from loratwin.workload.spec import MAX_RATE_REQ_S, RATE_WORDS, check_adapter_id

RATES_HEADER = ("period", "adapter_id", "rank", "rate")


@dataclass(frozen=True)
class Period:
    index: int
    start_s: float
    duration_s: float
    workload: WorkloadSpec


def read_periods(path: str | Path, period_s: float) -> list[Period]:
    """The periods of a rates CSV or a trace directory (module docstring), in time order."""
    if isinstance(period_s, bool) or not isinstance(period_s, (int, float)) or not math.isfinite(period_s) \
            or period_s <= 0:
        raise InputError(f"--period must be a number of seconds > 0, got {period_s!r}")
    path = Path(path)
    if path.is_dir():
        return _trace_periods(path, float(period_s))
    if path.suffix.lower() != ".csv":
        raise InputError(f"{path}: expected a CSV {','.join(RATES_HEADER)} or a trace directory")
    return _csv_periods(path, float(period_s))


def _csv_periods(path: Path, period_s: float) -> list[Period]:
    if path.is_file():
        budget.require(budget.adapters_estimate(max(0, budget.estimate_rows(path) - 1)))
    text = read_user_text(path, f"a rates file (CSV with the header {','.join(RATES_HEADER)})")
    reader = csv.reader(text.splitlines())
    try:
        rows = _rows(path, reader)
    except csv.Error as err:
        raise InputError(f"{path} line {reader.line_num}: unreadable CSV ({err})") from None
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


def _trace_periods(path: Path, period_s: float) -> list[Period]:
    workload, requests = load_trace(path)
    end = float(requests.arrival_s[-1]) if len(requests) else 0.0
    count = max(1, math.floor(end / period_s + 0.5))
    which = np.minimum((requests.arrival_s // period_s).astype(np.int64), count - 1)
    n = len(workload.adapters)
    counts = np.zeros((count, n), dtype=np.int64)
    np.add.at(counts, (which, requests.adapter), 1)
    periods = []
    for k in range(count):
        # the last period takes the arrivals of a partial tail shorter than half a period too
        duration = period_s if k < count - 1 else max(period_s, end - k * period_s)
        adapters = tuple(a.model_copy(update={"rate_req_s": float(c / duration)})
                         for a, c in zip(workload.adapters, counts[k].tolist(), strict=True))
        periods.append(Period(k, k * period_s, period_s, workload.model_copy(update={"adapters": adapters})))
    return periods
