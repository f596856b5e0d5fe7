"""Read the adapters to place: a CSV `adapter_id,rank,rate`, a workload YAML, or a trace directory."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from loratwin import budget
from loratwin.errors import InputError
from loratwin.textfile import read_user_text
from loratwin.workload import AdapterSpec, WorkloadSpec, load_trace, load_workload_yaml
from loratwin.workload.spec import RATE_WORDS, _is_rate, check_adapter_id

T = TypeVar("T")

CSV_HEADER = ("adapter_id", "rank", "rate")


def load_adapters(path: str | Path) -> WorkloadSpec:
    """Adapters with rank and rate from `path`:
    - a CSV file with the header `adapter_id,rank,rate` (rate in req/s);
    - a workload YAML file (`adapters:` or `layout:`, see `loratwin.workload.load_workload_yaml`);
    - a trace directory (`trace.csv` + `adapters.csv`): rates from `adapters.csv` or observed in the trace.
    """
    path = Path(path)
    if path.is_dir():
        workload, _requests = load_trace(path)
        return workload
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_workload_yaml(path)
    if path.suffix.lower() == ".csv":
        return read_adapters_csv(path)
    if not path.exists():
        raise InputError(f"{path}: not found (expected a CSV adapter_id,rank,rate, a workload YAML or a trace directory)")
    raise InputError(f"{path}: expected a .csv (adapter_id,rank,rate), a .yaml workload or a trace directory")


def read_adapter_rows(path: Path, what: str, parse: Callable[[Path, Any], T]) -> T:
    """A user's CSV of one adapter a row, priced for the memory limit before it is read (its rows
    counted or extrapolated from its first megabyte), then `parse(path, csv_reader)`; `what` names
    the file expected when it cannot be read, and a row the csv module refuses is named by line."""
    if path.is_file():
        budget.require(budget.adapters_estimate(max(0, budget.estimate_rows(path) - 1)))
    reader = csv.reader(read_user_text(path, what).splitlines())
    try:
        return parse(path, reader)
    except csv.Error as err:  # e.g. a field longer than the csv module's limit
        raise InputError(f"{path} line {reader.line_num}: unreadable CSV ({err})") from None


def read_adapters_csv(path: str | Path) -> WorkloadSpec:
    """`adapter_id,rank,rate` (header row; rate in req/s), every mistake named with file and line.

    Priced for the memory limit before reading (its rows counted or extrapolated from its first
    megabyte) and again every CHECK_EVERY rows."""
    path = Path(path)
    adapters = read_adapter_rows(path, f"an adapters file (CSV with the header {','.join(CSV_HEADER)})", _read_rows)
    if not adapters:
        raise InputError(f"{path}: no adapters; expected at least one row after the header")
    return WorkloadSpec(adapters=tuple(adapters))


# rows between two checks of the memory limit while reading
CHECK_EVERY = 100_000


def _read_rows(path: Path, reader) -> list[AdapterSpec]:
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
        raise InputError(f"{path} line 1: expected the header {','.join(CSV_HEADER)}, got {','.join(header or [])!r}")
    adapters: list[AdapterSpec] = []
    first_line: dict[str, int] = {}
    total_rate = 0.0
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 3:
            raise InputError(f"{path} line {line}: expected 3 columns ({','.join(CSV_HEADER)}), got {len(row)}")
        adapter_id, rank_text, rate_text = (c.strip() for c in row)
        check_adapter_id(adapter_id, f"{path} line {line}")
        if adapter_id in first_line:
            raise InputError(f"{path} line {line}: duplicate adapter_id {adapter_id!r} (first on line {first_line[adapter_id]})")
        try:
            rank = int(rank_text)
        except ValueError:
            raise InputError(f"{path} line {line}: rank must be an integer > 0, got {rank_text!r}") from None
        if rank <= 0:
            raise InputError(f"{path} line {line}: rank must be an integer > 0, got {rank}")
        try:
            rate = float(rate_text)
        except ValueError:
            raise InputError(f"{path} line {line}: rate must be {RATE_WORDS}, got {rate_text!r}") from None
        if not _is_rate(rate):
            raise InputError(f"{path} line {line}: rate must be {RATE_WORDS}, got {rate_text!r}")
        first_line[adapter_id] = line
        adapters.append(AdapterSpec(id=adapter_id, rank=rank, rate_req_s=rate))
        total_rate += rate
        if len(adapters) % CHECK_EVERY == 0:
            budget.require(budget.adapters_estimate(len(adapters), total_rate))
    return adapters


def write_adapters_csv(workload: WorkloadSpec, path: str | Path) -> Path:
    """Write a workload's adapters as `adapter_id,rank,rate` (what `load_adapters` reads)."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for a in workload.adapters:
            writer.writerow([a.id, a.rank, repr(a.rate_req_s)])
    return path


# The built-in example of `loratwin quickstart`: 240 adapters, a few busy and many quiet.
QUICKSTART_CSV = Path(__file__).parent / "examples" / "quickstart.csv"
