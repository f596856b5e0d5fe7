"""Trace replay: a directory with `trace.csv` (the requests) and `adapters.csv` (the adapters), or
the public Azure LLM inference trace (`load_azure_trace`).

    trace.csv     arrival_time_s,adapter_id,input_tokens,output_tokens
    adapters.csv  adapter_id,rank[,rate]

Arrival times are seconds from the start of the trace (time 0), non-decreasing. The request table
keeps the trace's times and lengths exactly. The workload spec lists the adapters in `adapters.csv`
order with default lengths; an adapter's `rate_req_s` is the `rate` column when the file has one,
otherwise its request count divided by the trace span (the last arrival time, since the trace
starts at 0), or 0 when that span is 0.

A request's tokens (input_tokens + output_tokens) are at most `MAX_REQUEST_TOKENS`, 10,000,000: longer
than the context of any model vLLM serves, so a larger count is a mistake in the file, named by its line.

A replay is judged over the trace's own window by default (`replay_window`): a 600 s trace over an
hour would report a sixth of its throughput. What it offers is what the trace holds in the window
(`with_trace_rates`), whatever the `rate` column says.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loratwin import budget
from loratwin.errors import InputError
from loratwin.workload.requests import RequestTable
from loratwin.workload.spec import (
    MAX_RATE_REQ_S,
    RATE_WORDS,
    AdapterSpec,
    WorkloadSpec,
    _is_nonnegative,
    _is_rank,
    _is_rate,
    _validated_levels,
    _validated_seed,
    _validated_served,
    check_adapter_id,
)

__all__ = [
    "ADAPTERS_HEADER",
    "AZURE_HEADER",
    "TRACE_HEADER",
    "load_azure_trace",
    "load_trace",
    "replay_window",
    "trace_window_s",
    "with_trace_rates",
]

TRACE_HEADER = ("arrival_time_s", "adapter_id", "input_tokens", "output_tokens")
ADAPTERS_HEADER = ("adapter_id", "rank")
AZURE_HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_ADAPTERS_HEADER_WITH_RATE = ("adapter_id", "rank", "rate")

_INT32_MAX = int(np.iinfo(np.int32).max)
# a request's input + output tokens: above the longest context any model vLLM serves (10M tokens)
MAX_REQUEST_TOKENS = 10_000_000


@dataclass
class _AdapterRows:
    ids: list[str]
    ranks: list[int]
    rates: list[float] | None  # None when adapters.csv has no rate column


def load_trace(dir_path: str | Path) -> tuple[WorkloadSpec, RequestTable]:
    """Read `adapters.csv` and `trace.csv` from `dir_path`; every mistake names the file and line."""
    directory = Path(dir_path)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory}: is a file; expected the trace folder, the one holding trace.csv and "
                         "adapters.csv")
    if not directory.is_dir():
        raise InputError(f"{directory}: trace directory not found (expected trace.csv and adapters.csv in it)")
    # priced before reading: the rows each file holds (a header line each)
    budget.require(budget.trace_estimate(max(0, budget.estimate_rows(directory / "trace.csv") - 1),
                                         max(0, budget.estimate_rows(directory / "adapters.csv") - 1)))
    adapter_rows = _read_adapters(directory / "adapters.csv")
    requests = _read_requests(directory / "trace.csv", adapter_rows.ids)

    rates = adapter_rows.rates
    if rates is None:
        counts = np.bincount(requests.adapter, minlength=len(adapter_rows.ids))
        rates = _observed_rates(counts, float(requests.arrival_s[-1])).tolist()
    adapters = tuple(
        AdapterSpec(id=adapter_id, rank=rank, rate_req_s=rate)
        for adapter_id, rank, rate in zip(adapter_rows.ids, adapter_rows.ranks, rates, strict=True)
    )
    return WorkloadSpec(adapters=adapters), requests


def trace_window_s(requests: RequestTable) -> float:
    """The window a replay covers by default: from 0 to the whole second after the last arrival,
    so that every request arrives inside it (windows are half-open) and no idle time dilutes it."""
    return float(math.floor(requests.arrival_s[-1]) + 1) if len(requests) else 1.0


def replay_window(requests: RequestTable, duration_s: float | None) -> tuple[float, str | None]:
    """The window to replay `requests` over (`duration_s`, or the trace's own when None) and a line
    saying what that means for the results, or None when there is nothing to say."""
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"--duration must be a finite number of seconds > 0, got {duration_s:g}")
    own = trace_window_s(requests)
    last = float(requests.arrival_s[-1]) if len(requests) else 0.0
    if duration_s is None:
        return own, f"window: {own:g} s, the trace's own (its last arrival is at {last:.6g} s); --duration sets another"
    later = int(np.count_nonzero(requests.arrival_s >= duration_s))
    if later:
        return duration_s, (
            f"note: {later:,} of the trace's {len(requests):,} requests arrive after the {duration_s:g} s window "
            "and are left out"
        )
    if duration_s > own:
        return duration_s, (
            f"note: the trace's last arrival is at {last:.6g} s; throughput and offered load are averaged "
            f"over the whole {duration_s:g} s window, {duration_s - last:.6g} s of it after the trace"
        )
    return duration_s, None


def with_trace_rates(workload: WorkloadSpec, requests: RequestTable, window_s: float) -> WorkloadSpec:
    """`workload` with each adapter's rate what the trace sends it within [0, window_s): a replay
    offers what the trace holds, not what the `rate` column of adapters.csv says."""
    inside = requests.arrival_s < window_s
    counts = np.bincount(requests.adapter[inside], minlength=len(workload.adapters))
    adapters = tuple(
        adapter.model_copy(update={"rate_req_s": float(count / window_s)})
        for adapter, count in zip(workload.adapters, counts.tolist(), strict=True)
    )
    return workload.model_copy(update={"adapters": adapters})


def _observed_rates(counts: np.ndarray, span_s: float) -> np.ndarray:
    """Requests per second over the trace span; 0 when the span is 0 or too short to divide by (a
    rate beyond what a workload holds, MAX_RATE_REQ_S)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        rates = counts / span_s if span_s > 0 else np.zeros(len(counts))
    return rates if (np.isfinite(rates) & (rates <= MAX_RATE_REQ_S)).all() else np.zeros(len(counts))


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
            check_adapter_id(adapter_id, f"{path} line {line}")
            if adapter_id in first_line_of:
                raise InputError(
                    f"{path} line {line}: duplicate adapter_id {adapter_id!r} (first on line {first_line_of[adapter_id]})"
                )
            rank = _parse_int(row[1], path, line, "rank")
            if rank <= 0:
                raise InputError(f"{path} line {line}: rank must be an integer > 0, got {rank}")
            if rows.rates is not None:
                rate = _parse_float(row[2], path, line, "rate")
                if not _is_rate(rate):
                    raise InputError(f"{path} line {line}: rate must be {RATE_WORDS}, got {row[2].strip()}")
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

    prompt_tokens = _token_column(prompt_text, path, line_numbers, "input_tokens")
    output_tokens = _token_column(output_text, path, line_numbers, "output_tokens")
    too_long = np.flatnonzero(prompt_tokens.astype(np.int64) + output_tokens > MAX_REQUEST_TOKENS)
    if too_long.size:
        row = int(too_long[0])
        raise InputError(
            f"{path} line {line_numbers[row]}: input_tokens + output_tokens must be at most {MAX_REQUEST_TOKENS:,} "
            f"(longer than any model's context), got {int(prompt_tokens[row]):,} + {int(output_tokens[row]):,}"
        )
    return RequestTable(arrival_s=arrival_s, adapter=adapter, prompt_tokens=prompt_tokens, output_tokens=output_tokens)


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


# --- Azure LLM inference trace ----------------------------------------------------------------

# Date, time with any number of fractional digits, optional UTC offset.
_AZURE_TIMESTAMP = re.compile(
    r"\s*(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?\s*"
)


def load_azure_trace(
    path: str | Path,
    n_adapters: int,
    popularity: str = "uniform",
    exponent: float = 1.0,
    ranks: Sequence[int] = (8, 16),
    seed: int = 0,
    max_prompt_tokens: int | None = None,
    max_total_tokens: int | None = None,
) -> tuple[WorkloadSpec, RequestTable]:
    """Replay the public Azure LLM inference trace (`TIMESTAMP,ContextTokens,GeneratedTokens`) over
    `n_adapters` adapters.

    Times become seconds from the first row. The trace names no adapters, so each request goes to
    one drawn from the popularity law: "uniform", or "zipf" (adapter i, "lora-i", with probability
    proportional to 1 / (i + 1)^exponent). Ranks are assigned round-robin, then shuffled; one
    generator seeded with `seed` shuffles the ranks (as `zipf_layout` does), then draws the adapters.

    Lengths are kept, except that a count of 0 becomes 1 (every request has a prompt token and
    yields a token) and, when given, prompts are cut to `max_prompt_tokens` and outputs so that
    prompt + output <= `max_total_tokens`: the arrival pattern stays whole. Adapter rates in the
    returned spec are their request counts over the trace span, as in `load_trace`.
    """
    path = Path(path)
    n_adapters = _validated_served(n_adapters, "n_adapters")
    if popularity not in ("uniform", "zipf"):
        raise InputError(f"popularity: must be 'uniform' or 'zipf', got {popularity!r}")
    if not _is_nonnegative(exponent):
        raise InputError(f"exponent: must be a number >= 0, got {exponent!r}")
    rank_levels = _validated_levels(ranks, "ranks", "an integer > 0", _is_rank)
    rng = np.random.default_rng(_validated_seed(seed, "seed"))
    for name, limit in (("max_prompt_tokens", max_prompt_tokens), ("max_total_tokens", max_total_tokens)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
            raise InputError(f"{name}: must be an integer >= 1 or None, got {limit!r}")
    if max_total_tokens is not None and max_total_tokens < 2:
        raise InputError(f"max_total_tokens: must leave room for a prompt and an output token (>= 2), got {max_total_tokens}")

    budget.require(budget.trace_estimate(max(0, budget.estimate_rows(path) - 1), n_adapters))
    times, prompts, outputs = _read_azure_rows(path)
    if max_prompt_tokens is not None:
        np.minimum(prompts, max_prompt_tokens, out=prompts)
    if max_total_tokens is not None:
        np.minimum(prompts, max_total_tokens - 1, out=prompts)
        np.minimum(outputs, max_total_tokens - prompts, out=outputs)

    positions = np.arange(n_adapters)
    assigned_ranks = np.asarray(rank_levels, dtype=np.int64)[positions % len(rank_levels)]
    rng.shuffle(assigned_ranks)
    if popularity == "uniform":
        adapter = rng.integers(0, n_adapters, size=len(times))
    else:
        weights = (positions + 1.0) ** -float(exponent)
        adapter = rng.choice(n_adapters, size=len(times), p=weights / weights.sum())
    requests = RequestTable(arrival_s=times, adapter=adapter, prompt_tokens=prompts, output_tokens=outputs)

    rates = _observed_rates(np.bincount(requests.adapter, minlength=n_adapters), float(times[-1]))
    adapters = tuple(
        AdapterSpec(id=f"lora-{i}", rank=int(assigned_ranks[i]), rate_req_s=float(rates[i])) for i in range(n_adapters)
    )
    return WorkloadSpec(adapters=adapters), requests


def _read_azure_rows(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seconds from the first row, prompt and output token counts (int64, 0 raised to 1)."""
    stamp_text: list[str] = []
    prompt_text: list[str] = []
    output_text: list[str] = []
    line_numbers: list[int] = []
    with _csv_rows(path, "Azure trace", (AZURE_HEADER,)) as (reader, _header):
        for row in reader:
            if len(row) != 3:
                if _is_blank(row):
                    continue
                raise InputError(
                    f"{path} line {reader.line_num}: expected 3 columns ({','.join(AZURE_HEADER)}), got {len(row)}"
                )
            stamp_text.append(row[0])
            prompt_text.append(row[1])
            output_text.append(row[2])
            line_numbers.append(reader.line_num)
    if not line_numbers:
        raise InputError(f"{path}: the trace has no requests; expected at least one row after the header")

    stamps_ns = _timestamp_column(stamp_text, path, line_numbers)
    backwards = np.flatnonzero(np.diff(stamps_ns) < 0)
    if backwards.size:
        row = int(backwards[0]) + 1
        raise InputError(
            f"{path} line {line_numbers[row]}: TIMESTAMP must not be earlier than the previous row's "
            f"({stamp_text[row - 1].strip()}), got {stamp_text[row].strip()}"
        )
    times = (stamps_ns - stamps_ns[0]).astype(np.float64) / 1e9
    prompts = _count_column(prompt_text, path, line_numbers, "ContextTokens")
    outputs = _count_column(output_text, path, line_numbers, "GeneratedTokens")
    return times, np.maximum(prompts, 1), np.maximum(outputs, 1)


def _timestamp_column(texts: list[str], path: Path, lines: list[int]) -> np.ndarray:
    """Nanoseconds since the epoch (UTC), int64; a bad value is named with its line."""
    # numpy alone would also take "2023" or "now": check the shape of every value first.
    bad = next((index for index, text in enumerate(texts) if not _AZURE_TIMESTAMP.fullmatch(text)), None)
    if bad is None:
        try:
            with warnings.catch_warnings():
                # numpy warns about UTC offsets such as "+00:00", and applies them.
                warnings.simplefilter("ignore", UserWarning)
                # Fractions of any length parse; 7 digits (as in the trace) keep their first 9 ns digits.
                return np.array([text.strip() for text in texts], dtype="datetime64[ns]").astype(np.int64)
        except ValueError:
            # The shape was right but a field is out of range (month 13, hour 25...).
            bad = next(index for index, text in enumerate(texts) if _unparsable(text))
    raise InputError(
        f"{path} line {lines[bad]}: TIMESTAMP must be a date and time such as 2023-11-16 18:15:46.6805900, "
        f"got {texts[bad].strip()!r}"
    )


def _unparsable(text: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return bool(np.isnat(np.datetime64(text.strip(), "ns")))
    except ValueError:
        return True


def _count_column(texts: list[str], path: Path, lines: list[int], name: str) -> np.ndarray:
    try:
        values = np.array(texts).astype(np.int64)
    except (ValueError, OverflowError):
        values = None
    if values is not None and not np.any((values < 0) | (values > _INT32_MAX)):
        return values
    # Only reached with a bad value: find and name its line.
    for text, line in zip(texts, lines, strict=True):
        value = _parse_int(text, path, line, name)
        if not 0 <= value <= _INT32_MAX:
            raise InputError(f"{path} line {line}: {name} must be an integer between 0 and {_INT32_MAX}, got {value}")
    raise AssertionError(f"{name}: bulk conversion failed but every value parses")
