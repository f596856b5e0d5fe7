"""Optimum labels from sweep results: per workload and max_loras the frontier, per workload the best.

The frontier of (workload, max_loras) is the largest served count before the first refused run
(served ascending). A run is refused when it starves (1 - throughput / offered >= threshold) or,
with latency SLOs (`loratwin.slo`), when the twin's metric of an SLO is above its limit or missing
(no request finished). The best of a workload is the frontier point with the highest throughput
(ties: fewer slots, then fewer served). The rule reads only the runs present, so it gives the same
starvation labels on the sparse results of `sweep --search` as on the full grid; with SLOs a
search's runs (bisected for starvation) give a frontier at or below the full grid's.

The label and frontier rows carry the SLOs they were computed under (`slos`, e.g.
"ttft_p99:2000", empty without), so a reader knows what they mean.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loratwin.errors import InputError
from loratwin.files import written_whole
from loratwin.slo import Slo
from loratwin.sweep.store import IDENTITY_FIELDS, read_results
from loratwin.threshold import check_threshold

DEFAULT_THRESHOLD = 0.1
# what write_labels puts in its folder, in the order it lists them
LABEL_FILES = ("labels.parquet", "labels.csv", "frontiers.parquet", "frontiers.csv")

# The workload part of the store's schema: everything before the server configuration, less the
# run's own keys.
WORKLOAD_FIELDS: list[tuple[str, pa.DataType]] = [
    field
    for field in IDENTITY_FIELDS[: [name for name, _ in IDENTITY_FIELDS].index("served")]
    if field[0] not in ("config_key", "profile_hash")
]
WORKLOAD_NAMES = [name for name, _ in WORKLOAD_FIELDS]

# status of a frontier (with SLOs, "starved" reads "refused": starved or breaking an SLO)
FOUND = "found"  # a refused run follows the frontier
STARVED_AT_SMALLEST = "starved_at_smallest"  # even the fewest served are refused: no frontier
NOT_STARVED_IN_GRID = "not_starved_in_grid"  # no run refused: the frontier is at or beyond the grid's end
FAILED = "failed"  # a run before the first refused one failed: unknown
STARVED = "starved"  # first_refused_by: the run starves (else the SLO keys it breaks)

FRONTIER_SCHEMA = pa.schema(
    WORKLOAD_FIELDS
    + [
        ("max_loras", pa.int64()),
        ("frontier_served", pa.int64()),
        ("frontier_total_tok_s", pa.float64()),
        ("frontier_throughput_over_offered", pa.float64()),
        ("first_starved_served", pa.int64()),  # the first refused served count (starved, or see first_refused_by)
        ("first_refused_by", pa.string()),  # "starved", or the SLO keys the run breaks, comma-separated
        ("status", pa.string()),
        ("runs", pa.int64()),
        ("slos", pa.string()),
    ]
)
LABEL_SCHEMA = pa.schema(
    WORKLOAD_FIELDS
    + [
        ("best_max_loras", pa.int64()),
        ("best_served", pa.int64()),
        ("best_total_tok_s", pa.float64()),
        ("best_throughput_over_offered", pa.float64()),
        ("frontiers", pa.int64()),
        ("failed_frontiers", pa.int64()),
        ("slos", pa.string()),
    ]
)


def slos_text(slos: Iterable[Slo]) -> str | None:
    """The SLOs as typed (`ttft_p99:2000,itl_p99:50`), None without: the labels' `slos` column."""
    return ",".join(s.text for s in slos) or None


def check_slo_metrics(results: pa.Table, slos: Iterable[Slo], where: str = "the sweep's runs") -> None:
    """Refuse an SLO whose metric no finished run holds (a store written before the twin reported it)."""
    ok = results.filter(pc.equal(results.column("status"), "ok"))
    if ok.num_rows == 0:
        return
    for slo in slos:
        if slo.metric not in ok.column_names or ok.column(slo.metric).null_count == ok.num_rows:
            raise InputError(f"--slo {slo.text}: {where} hold no {slo.metric} (stored by a twin that did not report "
                             f"it); sweep again into a new --out folder to judge {slo.key}")


def refused_by(row: dict[str, Any], threshold: float, slos: Iterable[Slo]) -> str | None:
    """What refuses a finished run: "starved", else the SLO keys it breaks (a missing value breaks
    it: no request finished), else None (acceptable)."""
    if 1.0 - row["throughput_over_offered"] >= threshold:
        return STARVED
    broken = [slo.key for slo in slos if not slo.met(row.get(slo.metric))]
    return ",".join(broken) or None


def frontier_rows(results: pa.Table, threshold: float = DEFAULT_THRESHOLD, slos: tuple[Slo, ...] = ()
                  ) -> list[dict[str, Any]]:
    check_threshold(threshold, "--threshold")
    check_slo_metrics(results, slos)
    groups: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    for row in results.to_pylist():
        groups.setdefault((row["workload_index"], row["workload_key"], row["max_loras"]), []).append(row)
    out = []
    for (_, _, max_loras), rows in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1], item[0][2])):
        rows.sort(key=lambda r: r["served"])
        last_ok: dict[str, Any] | None = None
        status, first_starved, why = NOT_STARVED_IN_GRID, None, None
        for row in rows:
            if row["status"] != "ok" or row["throughput_over_offered"] is None:
                status = FAILED
                break
            why = refused_by(row, threshold, slos)
            if why is not None:
                status = FOUND if last_ok is not None else STARVED_AT_SMALLEST
                first_starved = row["served"]
                break
            last_ok = row
        known = status != FAILED and last_ok is not None
        out.append(
            {name: rows[0][name] for name in WORKLOAD_NAMES}
            | {
                "max_loras": max_loras,
                "frontier_served": last_ok["served"] if known else None,
                "frontier_total_tok_s": last_ok["total_tok_s"] if known else None,
                "frontier_throughput_over_offered": last_ok["throughput_over_offered"] if known else None,
                "first_starved_served": first_starved,
                "first_refused_by": why if first_starved is not None else None,
                "status": status,
                "runs": len(rows),
                "slos": slos_text(slos),
            }
        )
    return out


def best_rows(frontiers: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    by_workload: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in frontiers:
        by_workload.setdefault((row["workload_index"], row["workload_key"]), []).append(row)
    out = []
    for _, rows in sorted(by_workload.items(), key=lambda item: item[0]):
        candidates = [r for r in rows if r["frontier_served"] is not None]
        best = min(
            candidates, key=lambda r: (-r["frontier_total_tok_s"], r["max_loras"], r["frontier_served"]), default=None
        )
        out.append(
            {name: rows[0][name] for name in WORKLOAD_NAMES}
            | {
                "best_max_loras": best["max_loras"] if best else None,
                "best_served": best["frontier_served"] if best else None,
                "best_total_tok_s": best["frontier_total_tok_s"] if best else None,
                "best_throughput_over_offered": best["frontier_throughput_over_offered"] if best else None,
                "frontiers": len(rows),
                "failed_frontiers": sum(r["status"] == FAILED for r in rows),
                "slos": rows[0]["slos"],
            }
        )
    return out


def compute_labels(results: pa.Table, threshold: float = DEFAULT_THRESHOLD, slos: tuple[Slo, ...] = ()
                   ) -> tuple[pa.Table, pa.Table]:
    """(frontiers, labels): one row per (workload, max_loras), one row per workload; with `slos`, a
    frontier point also meets every SLO on the twin's metrics."""
    frontiers = frontier_rows(results, threshold, slos)
    return (
        pa.Table.from_pylist(frontiers, schema=FRONTIER_SCHEMA),
        pa.Table.from_pylist(best_rows(frontiers), schema=LABEL_SCHEMA),
    )


def _csv_ready(table: pa.Table) -> pa.Table:
    """List columns as comma-joined text ("8,8,16"): CSV has no lists."""
    columns = []
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_list(column.type):
            column = pa.array(
                [None if v is None else ",".join(f"{x:g}" for x in v) for v in column.to_pylist()], pa.string()
            )
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def write_labels(
    results_dir: str | Path, threshold: float = DEFAULT_THRESHOLD, out: str | Path | None = None,
    slos: tuple[Slo, ...] = (),
) -> dict[str, Any]:
    """Compute labels from the store in `results_dir` (under `slos`, if any); write labels and
    frontiers as Parquet and CSV into `out` (default: results_dir/labels). Returns counts, file
    paths, the label rows and a line per damaged part file left out ("warnings")."""
    skipped: list[str] = []
    results = read_results(results_dir, skipped=skipped)
    check_slo_metrics(results, slos, f"the runs in {results_dir}")
    frontiers, labels = compute_labels(results, threshold, slos)
    out_dir = Path(out) if out is not None else Path(results_dir) / "labels"
    with written_whole(out_dir, LABEL_FILES) as tmp:
        for name, table in (("labels", labels), ("frontiers", frontiers)):
            pq.write_table(table, tmp / f"{name}.parquet")
            pacsv.write_csv(_csv_ready(table), tmp / f"{name}.csv")
    files = [str(out_dir / name) for name in LABEL_FILES]
    statuses = frontiers.column("status").to_pylist()
    return {
        "results": str(results_dir),
        "threshold": threshold,
        "slos": [slo.text for slo in slos],
        "runs": results.num_rows,
        "workloads": labels.num_rows,
        "frontiers": frontiers.num_rows,
        "frontier_status": {s: statuses.count(s) for s in (FOUND, STARVED_AT_SMALLEST, NOT_STARVED_IN_GRID, FAILED)},
        "files": files,
        "labels": labels.to_pylist(),
        "warnings": skipped,  # damaged part files left out
    }
