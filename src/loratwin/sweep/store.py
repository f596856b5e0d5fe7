"""The results store of a sweep: Parquet part files listed by a JSON manifest, in one directory.

Why Parquet parts and a manifest rather than SQLite or DuckDB: pyarrow is already a dependency,
the rest of loratwin writes Parquet, and the learning stage reads column tables; one file per
finished batch is append-only, so crash safety reduces to atomic renames. The directory is
queryable as it stands (`pyarrow.dataset`, pandas, DuckDB, Polars all read `parts/*.parquet`).

Layout of DIR:
    grid.json       the grid the results belong to (a rerun with another grid is refused)
    manifest.json   the committed part files; replaced atomically (temp file + os.replace)
    parts/*.parquet one file per flushed batch of finished runs (successes and failures alike)

Crash safety: a part is written to a temp file, renamed into parts/, then the manifest is
replaced. A kill between the two leaves a complete part that the manifest does not list: on the
next open it is adopted if none of its runs is already committed, deleted otherwise (the case of
a compaction cut short). Temp files are always deleted. So a kill at any moment loses at most the
runs not yet flushed (a couple of seconds' worth) and never duplicates one.

Damage from outside (a disk error, a copy cut short): a listed part that cannot be read whole is
renamed to `<name>.corrupt` by the next sweep that opens the store, dropped from the manifest, and
its runs are rerun; every other result is kept. Readers (`read_results`, hence `labels`) leave the
store as it is and skip such a part with a warning.
"""

from __future__ import annotations

import fcntl
import json
import re
import secrets
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import pyarrow as pa
import pyarrow.parquet as pq

from loratwin.errors import LoratwinError
from loratwin.files import atomic_write

FORMAT = "loratwin-sweep/1"
MANIFEST = "manifest.json"
GRID_FILE = "grid.json"
PARTS = "parts"
LOCK = ".lock"
# what marks a folder as a store (to resume): the parts folder is made first, the grid file next
STORE_MARKS = (GRID_FILE, MANIFEST, PARTS)

IDENTITY_FIELDS: list[tuple[str, pa.DataType]] = [
    ("config_key", pa.string()),
    ("workload_key", pa.string()),
    ("workload_index", pa.int64()),
    ("profile", pa.string()),
    ("profile_hash", pa.string()),
    ("layout", pa.string()),
    ("rate_levels", pa.list_(pa.float64())),
    ("zipf_total_rate_req_s", pa.float64()),
    ("zipf_exponent", pa.float64()),
    ("rank_levels", pa.list_(pa.int64())),
    ("arrival", pa.string()),
    ("seed", pa.int64()),
    ("duration_s", pa.float64()),
    ("served", pa.int64()),
    ("max_loras", pa.int64()),
    ("max_lora_rank", pa.int64()),
    ("max_cpu_loras", pa.int64()),
    ("max_num_seqs", pa.int64()),
    ("max_num_batched_tokens", pa.int64()),
    ("client_max_waiting", pa.int64()),
]
OUTCOME_FIELDS: list[tuple[str, pa.DataType]] = [
    ("status", pa.string()),  # ok | failed | infeasible
    ("error", pa.string()),
]
_FLOAT_METRICS = [
    "input_tok_s", "output_tok_s", "total_tok_s", "request_throughput_req_s",
    "mean_ttft_ms", "p50_ttft_ms", "p99_ttft_ms", "mean_itl_ms", "p50_itl_ms", "p99_itl_ms",
    # p99_tpot_ms: null in parts written before the twin reported it (labels --slo tpot_p99 refuses those)
    "mean_tpot_ms", "p99_tpot_ms",
    # what the TTFT SLOs judge (twin.result.ttft_all_sent_ms); null in parts written before
    "mean_ttft_all_sent_ms", "p99_ttft_all_sent_ms",
    "offered_tok_s", "throughput_over_offered", "mean_running", "mean_waiting", "kv_usage_mean", "kv_usage_max",
    "min_adapter_completion_ratio",
]
_INT_METRICS = [
    "arrived", "sent", "completed", "unfinished", "preemptions", "adapter_loads_cpu_to_gpu",
    "adapter_loads_disk_to_cpu", "steps", "max_waiting", "starved_adapters", "kv_cache_tokens",
]
METRIC_FIELDS: list[tuple[str, pa.DataType]] = (
    [(name, pa.float64()) for name in _FLOAT_METRICS]
    + [(name, pa.int64()) for name in _INT_METRICS]
    + [("starved", pa.bool_())]
)
SCHEMA = pa.schema(IDENTITY_FIELDS + OUTCOME_FIELDS + METRIC_FIELDS)
METRIC_NAMES = [name for name, _ in METRIC_FIELDS]
# Finished runs are committed at least this often (seconds): a kill loses at most this much work.
FLUSH_INTERVAL_S = 2.0
SORT_ORDER = [("workload_index", "ascending"), ("max_loras", "ascending"), ("served", "ascending")]


class StoreError(LoratwinError):
    """The results directory cannot be used as asked (another grid, another sweep writing, damage)."""


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n"))


_PART_NAME = re.compile(r"part-(\d+)-[0-9a-f]+\.parquet")
CORRUPT_SUFFIX = ".corrupt"


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise StoreError(f"{path}: unreadable {what} ({err}); it was not written by loratwin or is damaged") from None


def _read_manifest(root: Path) -> list[dict[str, Any]]:
    path = root / MANIFEST
    if not path.exists():
        return []
    data = _read_json(path, "manifest")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise StoreError(f"{path}: not a loratwin sweep manifest (format {found!r})")
    parts = data.get("parts")
    if not isinstance(parts, list) or not all(
        isinstance(p, dict) and isinstance(p.get("file"), str) and _PART_NAME.fullmatch(p["file"]) for p in parts
    ):
        raise StoreError(f"{path}: damaged manifest (expected a list of part files named part-NNNNNN-xxxx.parquet)")
    return list(parts)


def _read_part(root: Path, name: str) -> pa.Table:
    """A part file, read whole (every column decoded): damage anywhere in it shows here."""
    return pq.read_table(root / PARTS / name, schema=SCHEMA)


def _unreadable(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0]


def _set_aside(path: Path) -> Path:
    """Rename a damaged part to `<name>.corrupt` (`.corrupt.1`, ... if taken); it stays for inspection."""
    target = path.with_name(path.name + CORRUPT_SUFFIX)
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}.{n}")
    path.rename(target)
    return target


_ABSENT = object()


def _changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The fields that differ between two canonical grids, as `path (old -> new)`."""
    if isinstance(old, dict) and isinstance(new, dict):
        changed = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            changed += _changed_fields(old.get(key, _ABSENT), new.get(key, _ABSENT), path)
        return changed
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (a, b) in enumerate(zip(old, new)) for line in _changed_fields(a, b, f"{prefix}[{i}]")]
    if old == new:
        return []

    def short(value: Any) -> str:
        text = "absent" if value is _ABSENT else json.dumps(value)
        return text if len(text) <= 40 else text[:37] + "..."

    return [f"{prefix or 'the grid'} ({short(old)} -> {short(new)})"]


def rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


class ResultStore:
    """Incremental, crash-safe storage of one sweep's run records (one writer at a time).

    `done` maps every committed or pending config key to its record's status and
    `throughput_over_offered`, which is all that resuming a sweep or a search needs.
    """

    def __init__(
        self,
        root: str | Path,
        grid: dict[str, Any] | None = None,
        *,
        flush_rows: int = 256,
        flush_interval_s: float | None = None,
        compact_above: int = 32,
    ) -> None:
        self.root = Path(root)
        self.flush_rows = flush_rows
        self.flush_interval_s = FLUSH_INTERVAL_S if flush_interval_s is None else flush_interval_s
        self.compact_above = compact_above
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / PARTS).mkdir(exist_ok=True)
        # held open (and locked) for the store's lifetime; the OS releases it if the process dies
        self._lock = open(self.root / LOCK, "a")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreError(f"{self.root}: another sweep is writing to this directory") from None
        # one line per damaged part set aside on opening (its runs are not in `done`: they rerun)
        self.set_aside: list[str] = []
        self.done: dict[str, dict[str, Any]] = {}
        try:
            self._check_grid(grid)
            self._parts = self._recover()
        except BaseException:
            self._lock.close()
            raise
        self._pending: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._seq = 1 + max((int(_PART_NAME.fullmatch(p["file"]).group(1)) for p in self._parts), default=0)

    # --- opening ----------------------------------------------------------------------------

    def _check_grid(self, grid: dict[str, Any] | None) -> None:
        path = self.root / GRID_FILE
        if path.exists():
            stored = _read_json(path, "grid file")
            if grid is not None and stored != grid:
                about = stored if isinstance(stored, dict) else {}
                name, profile = about.get("name", "?"), about.get("profile", "?")
                raise StoreError(
                    f"{self.root} holds results of another grid ({name}, profile {profile}); changed: "
                    f"{', '.join(_changed_fields(stored, grid))}; give a new --out directory, or the grid it was run with"
                )
        elif grid is not None:
            _write_json(path, grid)

    def _recover(self) -> list[dict[str, Any]]:
        """Delete temp files left by a kill; adopt or delete part files the manifest does not list."""
        for folder in (self.root, self.root / PARTS):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        listed_parts = _read_manifest(self.root)
        listed = {p["file"] for p in listed_parts}
        keys: set[str] = set()
        parts: list[dict[str, Any]] = []
        changed = False
        for p in listed_parts:
            if not (self.root / PARTS / p["file"]).exists():  # its runs are not in `done`: they run again
                self.set_aside.append(f"{self.root / PARTS / p['file']}: a part file listed in the manifest is missing; "
                                      f"its {p.get('rows', '?')} runs are run again")
                changed = True
                continue
            # read whole, so that damage anywhere in it shows now and not in a later compaction
            try:
                table = _read_part(self.root, p["file"])
            except (OSError, pa.ArrowException) as err:
                moved = _set_aside(self.root / PARTS / p["file"])
                self.set_aside.append(
                    f"{self.root / PARTS / p['file']}: unreadable part file ({_unreadable(err)}); moved to "
                    f"{moved.name}, its {p.get('rows', '?')} runs are run again"
                )
                changed = True
                continue
            parts.append(p)
            keys.update(table.column("config_key").to_pylist())
            self._remember(table)
        for path in sorted((self.root / PARTS).glob("part-*.parquet")):
            if path.name in listed or not _PART_NAME.fullmatch(path.name):
                continue
            try:
                table = _read_part(self.root, path.name)
            except (OSError, pa.ArrowException):
                table = None
            part_keys = [] if table is None else table.column("config_key").to_pylist()
            if table is None or keys.intersection(part_keys):
                path.unlink()
            else:
                keys.update(part_keys)
                parts.append(self._describe_part(path.name, table))
                self._remember(table)
            changed = True
        if changed:
            self._write_manifest(parts)
        return parts

    @staticmethod
    def _describe_part(name: str, table: pa.Table) -> dict[str, Any]:
        status = table.column("status").to_pylist()
        return {"file": name, "rows": len(status), "failed": status.count("failed")}

    def _remember(self, table: pa.Table) -> None:
        """Record a committed part's runs in `done`."""
        for row in table.select(["config_key", "status", "throughput_over_offered"]).to_pylist():
            self.done[row.pop("config_key")] = row

    def _write_manifest(self, parts: list[dict[str, Any]]) -> None:
        _write_json(self.root / MANIFEST, {"format": FORMAT, "parts": parts})

    # --- writing ----------------------------------------------------------------------------

    def add(self, record: dict[str, Any]) -> None:
        """Buffer one finished run; flushes a part when enough rows or time have gathered."""
        key = record["config_key"]
        if key in self.done:
            raise StoreError(f"run {key} is already stored")
        self._pending.append(record)
        self.done[key] = {"status": record["status"], "throughput_over_offered": record.get("throughput_over_offered")}
        if len(self._pending) >= self.flush_rows:
            self.flush()
        else:
            self.flush_if_due()

    def flush_if_due(self) -> None:
        if self._pending and time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Commit the buffered runs as one part file."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        # Taken off the buffer first: if this flush is cut short, its runs are lost (and rerun by
        # the next sweep), never written twice by a later flush.
        records, self._pending = self._pending, []
        name = f"part-{self._seq:06d}-{secrets.token_hex(4)}.parquet"
        self._seq += 1
        table = rows_to_table(records)
        atomic_write(self.root / PARTS / name, lambda tmp: pq.write_table(table, tmp))
        self._parts.append(
            {"file": name, "rows": table.num_rows, "failed": sum(r["status"] == "failed" for r in records)}
        )
        self._write_manifest(self._parts)
        if len(self._parts) > self.compact_above:
            self.compact()

    def compact(self) -> None:
        """Merge all parts into one (sorted); the manifest switches to it atomically."""
        if len(self._parts) <= 1:
            return
        old = [p["file"] for p in self._parts]
        table = pa.concat_tables(pq.read_table(self.root / PARTS / name, schema=SCHEMA) for name in old)
        table = table.sort_by(SORT_ORDER)
        name = f"part-{self._seq:06d}-{secrets.token_hex(4)}.parquet"
        self._seq += 1
        atomic_write(self.root / PARTS / name, lambda tmp: pq.write_table(table, tmp))
        statuses = table.column("status").to_pylist()
        self._parts = [{"file": name, "rows": table.num_rows, "failed": statuses.count("failed")}]
        self._write_manifest(self._parts)
        for stale in old:
            (self.root / PARTS / stale).unlink(missing_ok=True)

    def close(self, compact: bool = True) -> None:
        try:
            self.flush()
            if compact:
                self.compact()
        finally:
            self._lock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        # After an interrupt, keep what finished but skip the (possibly long) compaction.
        self.close(compact=exc[0] is None)


def read_results(root: str | Path, skipped: list[str] | None = None) -> pa.Table:
    """Every committed run of the store in `root`, sorted by workload, max_loras, served.

    A part that cannot be read is left out, and the store left as it is (a reader does not repair
    it; the next sweep on it does): one line about it is appended to `skipped` when a list is
    given, else issued as a warning."""
    root = Path(root)
    if not (root / MANIFEST).exists() and not (root / GRID_FILE).exists():
        raise StoreError(f"{root}: not a sweep results directory (no {MANIFEST})")
    for attempt in range(3):
        parts = _read_manifest(root)
        problems: list[str] = []
        tables = []
        p = {}
        try:
            for p in parts:
                try:
                    tables.append(_read_part(root, p["file"]))
                except FileNotFoundError:
                    raise
                except (OSError, pa.ArrowException) as err:
                    problems.append(
                        f"{root / PARTS / p['file']}: unreadable part file ({_unreadable(err)}); its "
                        f"{p.get('rows', '?')} runs are left out (the next sweep into {root} sets it aside and reruns them)"
                    )
            break
        except FileNotFoundError:
            # a writer compacted between reading the manifest and the parts
            if attempt == 2:
                raise StoreError(
                    f"{root / PARTS / p.get('file', '?')}: a part file listed in the manifest of {root} is missing; resume the sweep "
                    f"(loratwin sweep GRID --out {root}, with the grid it was run with) to run its runs again"
                ) from None
            time.sleep(0.2)
    for problem in problems:
        if skipped is None:
            warnings.warn(problem, stacklevel=2)
        else:
            skipped.append(problem)
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    keys = table.column("config_key")
    if len(set(keys.to_pylist())) != table.num_rows:
        raise StoreError(f"{root}: the store holds a run twice; it was written by something other than loratwin")
    return table.sort_by(SORT_ORDER)


def store_bytes(root: str | Path) -> int:
    """Size on disk of the committed store (grid, manifest and listed parts)."""
    root = Path(root)
    files = [root / GRID_FILE, root / MANIFEST] + [root / PARTS / p["file"] for p in _read_manifest(root)]
    return sum(f.stat().st_size for f in files if f.exists())
