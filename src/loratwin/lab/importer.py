"""`import_runs(folders)`: measured runs into rows of the runs table, one per folder.

A run's folder holds the server's log (`server.log`, vllm serve's stdout and stderr) and its benchmark
clients' result files (`*.json`, one per client; `*.pytorch.json` side files are skipped), as the
plan's commands lay them out. A folder with a log that shows a start-up failure for lack of memory and
no result file is a run that did not start (status oom_at_start).

The adapters' rate levels and rank cycle come from the result files' `loratwin_*` metadata (the plan's
clients set it); a single result file without it is read as one client over all the served adapters at
equal rates; the ranks are then read from each adapter's adapter_config.json where the log's paths reach.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from loratwin.budget import PROCESS_BYTES, Estimate, require
from loratwin.errors import InputError
from loratwin.files import atomic_write
from loratwin.lab.bench_json import (
    JSON_BYTES_PER_FILE_BYTE,
    META_CLIENTS,
    META_COUNTS,
    META_RANKS,
    META_RATES,
    META_RUN,
    BenchResult,
    read_bench_json,
)
from loratwin.lab.runs_table import COLUMNS, measured_columns, model_name, rate_columns, server_row
from loratwin.lab.server_log import ServerFacts, read_server_log

SERVER_LOG = "server.log"
KV_COLUMNS = ("model", "experiment_id", "max_loras", "max_lora_rank", "max_num_seqs", "gpu_memory_utilization",
              "kv_cache_tokens", "feasible", "failure_detail", "model_load_gib")
# Reading a log holds its bytes and its text (and small matches): an estimate per byte of it.
LOG_BYTES_PER_FILE_BYTE = 3
RATE_TOLERANCE = 1e-3  # relative: levels x counts against the clients' request rates (printed to 6 digits)


def import_runs(folders: list[Path], source_set: str = "imported") -> list[dict[str, object]]:
    rows, seen = [], {}
    for folder in folders:
        row = import_run(Path(folder), source_set)
        if row["run_id"] in seen:
            raise InputError(f"{folder}: run {row['run_id']!r} is also in {seen[row['run_id']]}; give each run once")
        seen[row["run_id"]] = folder
        rows.append(row)
    return rows


def import_run(folder: Path, source_set: str) -> dict[str, object]:
    if not folder.is_dir():
        raise InputError(f"{folder}: {'is not a folder' if folder.exists() else 'does not exist'}; expected a run's "
                         f"folder ({SERVER_LOG} and the clients' result JSON files)")
    log = folder / SERVER_LOG
    _price(log)
    facts = read_server_log(log)
    files = [p for p in sorted(folder.glob("*.json")) if not p.name.endswith(".pytorch.json")]
    # all of a run's files are held at once, and merging copies their per-request lists (~2 B per byte)
    size = sum(p.stat().st_size for p in files if p.is_file())
    require(Estimate(PROCESS_BYTES + (JSON_BYTES_PER_FILE_BYTE + 2) * size, 0.0, f"reading the result files in {folder}"))
    results = [read_bench_json(p) for p in files]
    if not results:
        if facts.failure is None:
            raise InputError(f"{folder}: no result JSON file, and {log} shows no start-up failure; expected the "
                             "clients' --save-result files beside the server log")
        row = server_row(facts, folder.name, source_set)
        row.update(status="oom_at_start", status_detail=facts.failure)
        row.update(rate_columns([(0.0, facts.served_adapters)], _rank_cycle(facts, None, log, lenient=True), row))
        return row
    if facts.kv_cache_tokens is None:
        raise InputError(f"{log}: no 'GPU KV cache size: N tokens' line, yet the clients saved results; expected "
                         "the whole log of the server they ran against (vllm serve's stdout and stderr)")
    run_id = _agreed(results, META_RUN) or folder.name
    clients = _agreed(results, META_CLIENTS)
    if clients is not None and clients != str(len(results)):
        raise InputError(f"{folder}: {len(results)} result files, but their {META_CLIENTS} says the run had {clients} "
                         "clients; expected all of the run's result files")
    for r in results:
        if model_name(r.model_id) != model_name(facts.model):
            raise InputError(f"{r.path}: model_id {r.model_id!r} is not the model of {log} ({facts.model!r}); "
                             "expected one run's files in one folder")
    row = server_row(facts, run_id, source_set)
    row.update(status="ok", status_detail=None, result_files=" ".join(r.path.name for r in results))
    row.update(measured_columns(results))
    cycle = _rank_cycle(facts, _agreed(results, META_RANKS), log)
    row.update(rate_columns(_levels(results, facts), cycle, row))
    return row


def write_runs_csv(rows: list[dict[str, object]], path: Path) -> None:
    """The rows as a runs table (COLUMNS), written whole."""
    atomic_write(path, lambda tmp: tmp.write_text(_csv(rows, COLUMNS)))


def kv_rows(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The KV capacity of each run's server, in the format of calibration/kv_capacity.csv."""
    return [{
        "model": r["model"], "experiment_id": r["run_id"], "max_loras": r["max_loras"],
        "max_lora_rank": r["max_lora_rank"], "max_num_seqs": r["max_num_seqs"],
        "gpu_memory_utilization": r["gpu_memory_utilization"], "kv_cache_tokens": r.get("kv_cache_tokens"),
        "feasible": int(r["status"] != "oom_at_start"), "failure_detail": r.get("status_detail"),
        "model_load_gib": r.get("model_load_gib"),
    } for r in rows]


def write_kv_csv(rows: list[dict[str, object]], path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(_csv(kv_rows(rows), KV_COLUMNS)))


def _csv(rows: list[dict[str, object]], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return out.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def _price(log: Path) -> None:
    try:
        size = os.path.getsize(log)
    except OSError:
        return  # read_server_log names the missing file
    require(Estimate(PROCESS_BYTES + LOG_BYTES_PER_FILE_BYTE * size, 0.0, f"reading {log}"))


def _agreed(results: list[BenchResult], key: str) -> str | None:
    """A metadata value all the result files that hold it agree on."""
    holders = [r for r in results if key in r.metadata]
    for r in holders[1:]:
        if r.metadata[key] != holders[0].metadata[key]:
            raise InputError(f"{r.path}: {key} {r.metadata[key]!r} differs from {holders[0].metadata[key]!r} in "
                             f"{holders[0].path.name}; expected one run's files in one folder")
    return holders[0].metadata[key] if holders else None


def _levels(results: list[BenchResult], facts: ServerFacts) -> list[tuple[float, int]]:
    """(per-adapter rate, adapters) of every client, checked against the server's adapters and the
    clients' request rates; served adapters no client sent to make a level of rate 0."""
    if len(results) > 1 or META_RATES in results[0].metadata:
        levels = []
        for r in results:
            if META_RATES not in r.metadata or META_COUNTS not in r.metadata:
                raise InputError(f"{r.path}: no {META_RATES} and {META_COUNTS} metadata; with several result files "
                                 "in a run each must say which adapters its client sent to (the plan's commands do)")
            rates = _numbers(r, META_RATES, float)
            counts = _numbers(r, META_COUNTS, int)
            if len(rates) != len(counts) or any(c < 1 for c in counts):
                raise InputError(f"{r.path}: {META_RATES} and {META_COUNTS} must be lists of the same length, "
                                 "counts >= 1")
            offered = math.fsum(a * c for a, c in zip(rates, counts, strict=True))
            if not math.isclose(offered, r.request_rate, rel_tol=RATE_TOLERANCE):
                raise InputError(f"{r.path}: {META_RATES} x {META_COUNTS} give {offered:g} req/s, but request_rate is "
                                 f"{r.request_rate:g}")
            levels += zip(rates, counts, strict=True)
    else:
        r = results[0]
        if not math.isfinite(r.request_rate):
            raise InputError(f"{r.path}: request_rate is inf (all requests at once); the runs table needs Poisson rates")
        levels = [(r.request_rate / facts.served_adapters, facts.served_adapters)]
    counted = sum(c for _, c in levels)
    if counted > facts.served_adapters:
        raise InputError(f"{results[-1].path}: {META_COUNTS} add up to {counted} adapters over the run's result files, "
                         f"but {facts.path} serves {facts.served_adapters} (--lora-modules)")
    return levels + ([(0.0, facts.served_adapters - counted)] if counted < facts.served_adapters else [])


def _numbers(result: BenchResult, key: str, kind: type) -> list:
    try:
        values = [kind(x) for x in result.metadata[key].split(",")]
    except ValueError:
        raise InputError(f"{result.path}: {key} must be comma-separated numbers, got {result.metadata[key]!r}") from None
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise InputError(f"{result.path}: {key} must be numbers >= 0, got {result.metadata[key]!r}")
    return values


def _rank_cycle(facts: ServerFacts, stated: str | None, log: Path, lenient: bool = False) -> tuple[int, ...]:
    """The served adapters' rank cycle: as the metadata states it, else from their adapter_config.json files
    (else, for a server that did not start, `max_lora_rank`: ranks do not decide whether it starts)."""
    if stated is not None:
        try:
            cycle = tuple(int(x) for x in stated.split(","))
        except ValueError:
            raise InputError(f"{log.parent}: {META_RANKS} must be comma-separated ranks, got {stated!r}") from None
    else:
        ranks = [_adapter_rank(path) for _, path in facts.lora_modules]
        if None in ranks:
            if lenient:
                return (facts.max_lora_rank,)
            missing = facts.lora_modules[ranks.index(None)][1]
            raise InputError(f"{log}: the adapters' ranks are unknown: no {META_RANKS} metadata in the result files "
                             f"and {missing}/adapter_config.json cannot be read from here")
        period = next(p for p in range(1, len(ranks) + 1) if all(ranks[i] == ranks[i % p] for i in range(len(ranks))))
        cycle = tuple(ranks[:period])
    if not cycle or min(cycle) < 1 or max(cycle) > facts.max_lora_rank:
        raise InputError(f"{log.parent}: adapter ranks {list(cycle)} must be from 1 to the server's --max-lora-rank "
                         f"{facts.max_lora_rank}")
    return cycle


def _adapter_rank(path: str) -> int | None:
    try:
        rank = json.loads((Path(path) / "adapter_config.json").read_text()).get("r")
    except (OSError, ValueError, AttributeError):
        return None
    return rank if isinstance(rank, int) and rank >= 1 else None
