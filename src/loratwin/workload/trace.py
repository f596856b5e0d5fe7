"""Trace replay: a directory with `trace.csv` (the requests) and `adapters.csv` (the adapters).

    trace.csv     arrival_time_s,adapter_id,input_tokens,output_tokens
    adapters.csv  adapter_id,rank[,rate]

Arrival times are seconds from the start of the trace (time 0), non-decreasing. The request table
keeps the trace's times and lengths exactly. The workload spec lists the adapters in `adapters.csv`
order with default lengths; an adapter's `rate_req_s` is the `rate` column when the file has one,
otherwise its request count divided by the trace span (the last arrival time, since the trace
starts at 0), or 0 when that span is 0.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.errors import InputError
from loratwin.workload.requests import RequestTable
from loratwin.workload.spec import AdapterSpec, WorkloadSpec

__all__ = ["ADAPTERS_HEADER", "TRACE_HEADER", "load_trace"]

TRACE_HEADER = ("arrival_time_s", "adapter_id", "input_tokens", "output_tokens")
ADAPTERS_HEADER = ("adapter_id", "rank")
_ADAPTERS_HEADER_WITH_RATE = ("adapter_id", "rank", "rate")

_INT32_MAX = int(np.iinfo(np.int32).max)


@dataclass
class _AdapterRows:
    ids: list[str]
    ranks: list[int]
    rates: list[float] | None  # None when adapters.csv has no rate column


def load_trace(dir_path: str | Path) -> tuple[WorkloadSpec, RequestTable]:
    """Read `adapters.csv` and `trace.csv` from `dir_path`; every mistake names the file and line."""
    directory = Path(dir_path)
    if not directory.is_dir():
        raise InputError(f"{directory}: trace directory not found (expected trace.csv and adapters.csv in it)")
    adapter_rows = _read_adapters(directory / "adapters.csv")
    requests = _read_requests(directory / "trace.csv", adapter_rows.ids)

    rates = adapter_rows.rates
    if rates is None:
        span_s = float(requests.arrival_s[-1])
        counts = np.bincount(requests.adapter, minlength=len(adapter_rows.ids))
        rates = (counts / span_s).tolist() if span_s > 0 else [0.0] * len(counts)
    adapters = tuple(
        AdapterSpec(id=adapter_id, rank=rank, rate_req_s=rate)
        for adapter_id, rank, rate in zip(adapter_rows.ids, adapter_rows.ranks, rates, strict=True)
    )
    return WorkloadSpec(adapters=adapters), requests


@contextmanager
def _csv_rows(path: Path, kind: str, headers: tuple[tuple[str, ...], ...]) -> Iterator[tuple[Any, tuple[str, ...]]]:
    """The csv reader positioned after a checked header, and that header."""
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: {kind} file not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read the {kind} file ({err})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            expected = " or ".join(",".join(header) for header in headers)
            first_row = next(reader, None)
            if first_row is None:
                raise InputError(f"{path} line 1: the file is empty; expected the header {expected}")
            header = tuple(cell.strip() for cell in first_row)
            if header not in headers:
                raise InputError(f"{path} line 1: expected the header {expected}, got {','.join(header)}")
            yield reader, header
        except (csv.Error, UnicodeDecodeError) as err:
            raise InputError(f"{path} line {reader.line_num}: unreadable CSV ({err})") from None


def _is_blank(row: list[str]) -> bool:
    return all(not cell.strip() for cell in row)


def _read_adapters(path: Path) -> _AdapterRows:
    rows = _AdapterRows(ids=[], ranks=[], rates=None)
    first_line_of: dict[str, int] = {}
    with _csv_rows(path, "adapters", (ADAPTERS_HEADER, _ADAPTERS_HEADER_WITH_RATE)) as (reader, header):
        if len(header) == 3:
            rows.rates = []
        for row in reader:
            line = reader.line_num
            if _is_blank(row):
                continue
            if len(row) != len(header):
                raise InputError(
                    f"{path} line {line}: expected {len(header)} columns ({','.join(header)}), got {len(row)}"
                )
            adapter_id = row[0].strip()
            if not adapter_id:
                raise InputError(f"{path} line {line}: adapter_id must not be empty")
            if adapter_id in first_line_of:
                raise InputError(
                    f"{path} line {line}: duplicate adapter_id {adapter_id!r} (first on line {first_line_of[adapter_id]})"
                )
            rank = _parse_int(row[1], path, line, "rank")
            if rank <= 0:
                raise InputError(f"{path} line {line}: rank must be an integer > 0, got {rank}")
            if rows.rates is not None:
                rate = _parse_float(row[2], path, line, "rate")
                if rate < 0:
                    raise InputError(f"{path} line {line}: rate must be >= 0 (req/s), got {row[2].strip()}")
                rows.rates.append(rate)
            first_line_of[adapter_id] = line
            rows.ids.append(adapter_id)
            rows.ranks.append(rank)
    if not rows.ids:
        raise InputError(f"{path}: no adapters; expected at least one row after the header")
    return rows


def _read_requests(path: Path, adapter_ids: list[str]) -> RequestTable:
    # Collect text columns first, convert each column in bulk: per-value conversion is the slow part.
    arrival_text: list[str] = []
    adapter_text: list[str] = []
    prompt_text: list[str] = []
    output_text: list[str] = []
    line_numbers: list[int] = []
    with _csv_rows(path, "trace", (TRACE_HEADER,)) as (reader, _header):
        for row in reader:
            if len(row) != 4:
                if _is_blank(row):
                    continue
                raise InputError(
                    f"{path} line {reader.line_num}: expected 4 columns ({','.join(TRACE_HEADER)}), got {len(row)}"
                )
            arrival_text.append(row[0])
            adapter_text.append(row[1].strip())
            prompt_text.append(row[2])
            output_text.append(row[3])
            line_numbers.append(reader.line_num)
    if not line_numbers:
        raise InputError(f"{path}: the trace has no requests; expected at least one row after the header")

    arrival_s = _float_column(arrival_text, path, line_numbers, "arrival_time_s")
    negative = np.flatnonzero(arrival_s < 0)
    if negative.size:
        row = int(negative[0])
        raise InputError(
            f"{path} line {line_numbers[row]}: arrival_time_s must be >= 0, got {arrival_text[row].strip()}"
        )
    out_of_order = np.flatnonzero(np.diff(arrival_s) < 0)
    if out_of_order.size:
        row = int(out_of_order[0]) + 1
        raise InputError(
            f"{path} line {line_numbers[row]}: arrival_time_s must be >= the previous arrival "
            f"({arrival_text[row - 1].strip()}), got {arrival_text[row].strip()}"
        )

    index_of = {adapter_id: position for position, adapter_id in enumerate(adapter_ids)}
    adapter = np.fromiter((index_of.get(name, -1) for name in adapter_text), dtype=np.int32, count=len(adapter_text))
    unknown = np.flatnonzero(adapter < 0)
    if unknown.size:
        row = int(unknown[0])
        raise InputError(
            f"{path} line {line_numbers[row]}: unknown adapter_id {adapter_text[row]!r}; "
            f"expected an id listed in {path.with_name('adapters.csv')}"
        )

    return RequestTable(
        arrival_s=arrival_s,
        adapter=adapter,
        prompt_tokens=_token_column(prompt_text, path, line_numbers, "input_tokens"),
        output_tokens=_token_column(output_text, path, line_numbers, "output_tokens"),
    )


def _float_column(texts: list[str], path: Path, lines: list[int], name: str) -> np.ndarray:
    try:
        values = np.array(texts, dtype=np.float64)
        if np.isfinite(values).all():
            return values
    except ValueError:
        pass
    # Only reached with a bad value: find and name its line.
    return np.array([_parse_float(text, path, line, name) for text, line in zip(texts, lines, strict=True)])


def _token_column(texts: list[str], path: Path, lines: list[int], name: str) -> np.ndarray:
    try:
        values = np.array(texts).astype(np.int64)
    except (ValueError, OverflowError):
        values = None
    if values is not None:
        bad = np.flatnonzero((values < 1) | (values > _INT32_MAX))
        if not bad.size:
            return values.astype(np.int32)
    # Only reached with a bad value: find and name its line.
    for text, line in zip(texts, lines, strict=True):
        value = _parse_int(text, path, line, name)
        if not 1 <= value <= _INT32_MAX:
            raise InputError(f"{path} line {line}: {name} must be an integer between 1 and {_INT32_MAX}, got {value}")
    raise AssertionError(f"{name}: bulk conversion failed but every value parses")


def _parse_int(text: str, path: Path, line: int, name: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InputError(f"{path} line {line}: {name} must be an integer, got {text.strip()!r}") from None


def _parse_float(text: str, path: Path, line: int, name: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise InputError(f"{path} line {line}: {name} must be a number, got {text.strip()!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{path} line {line}: {name} must be a finite number, got {text.strip()!r}")
    return value
