"""Labels on a hand-made results table: frontier per (workload, max_loras), best per workload."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest

from loratwin.errors import InputError, LoratwinError
from loratwin.slo import parse_slos
from loratwin.sweep.labels import compute_labels, write_labels
from loratwin.sweep.store import SCHEMA, ResultStore, rows_to_table


def row(workload: int, max_loras: int, served: int, ratio: float | None, tok_s: float | None = None, status: str = "ok",
        **metrics: float | None) -> dict:
    record = {name: None for name in SCHEMA.names} | {"p99_ttft_all_sent_ms": 100.0 * served, "p99_itl_ms": 50.0}
    record.update(
        config_key=f"{workload}-{max_loras}-{served}",
        workload_key=f"w{workload}",
        workload_index=workload,
        profile="llama-3.1-8b-instruct",
        layout="levels",
        rate_levels=[1.6, 0.8, 0.4] if workload == 0 else [0.1, 0.05, 0.025],
        rank_levels=[8, 16],
        arrival='{"kind":"poisson","schedule":null}',
        seed=0,
        duration_s=3600.0,
        served=served,
        max_loras=max_loras,
        status=status,
        throughput_over_offered=ratio,
        total_tok_s=tok_s if tok_s is not None else (None if ratio is None else 100.0 * served * ratio),
        error=None if status == "ok" else "boom",
    )
    return record | metrics


# workload 0: at 8 slots starvation from 48 on (a later run recovers, but the first starved point counts);
#             at 16 slots none starves; at 32 slots even the fewest starve.
# workload 1: at 8 slots a failed run before any starved one; at 16 slots 0.85 (starved at 0.1, not at 0.2).
TABLE = rows_to_table(
    [
        row(0, 8, 16, 0.99), row(0, 8, 32, 0.95), row(0, 8, 48, 0.80), row(0, 8, 64, 0.95),
        row(0, 16, 16, 0.99), row(0, 16, 32, 0.97, tok_s=3000.0), row(0, 16, 48, 0.93, tok_s=3000.0),
        row(0, 32, 32, 0.50),
        row(1, 8, 16, 0.99), row(1, 8, 32, None, status="failed"), row(1, 8, 48, 0.5),
        row(1, 16, 16, 0.99), row(1, 16, 32, 0.85), row(1, 16, 48, 0.6),
    ]
)


def _by_key(table):
    return {(r["workload_index"], r["max_loras"]): r for r in table.to_pylist()}


def test_frontiers():
    frontiers, _ = compute_labels(TABLE)
    f = _by_key(frontiers)
    assert (f[0, 8]["frontier_served"], f[0, 8]["first_starved_served"], f[0, 8]["status"]) == (32, 48, "found")
    assert f[0, 8]["frontier_total_tok_s"] == pytest.approx(100 * 32 * 0.95)
    assert (f[0, 16]["frontier_served"], f[0, 16]["status"]) == (48, "not_starved_in_grid")
    assert (f[0, 32]["frontier_served"], f[0, 32]["status"]) == (None, "starved_at_smallest")
    assert (f[1, 8]["frontier_served"], f[1, 8]["status"]) == (None, "failed")
    assert (f[1, 16]["frontier_served"], f[1, 16]["first_starved_served"]) == (16, 32)
    assert f[1, 16]["runs"] == 3 and f[1, 16]["rate_levels"] == [0.1, 0.05, 0.025]


def test_best_per_workload_and_threshold():
    _, labels = compute_labels(TABLE)
    best = {r["workload_index"]: r for r in labels.to_pylist()}
    # the frontier at 8 slots (32 served, 3040 tok/s) beats the one at 16 slots (48 served, 3000 tok/s)
    assert (best[0]["best_max_loras"], best[0]["best_served"]) == (8, 32)
    assert best[0]["best_total_tok_s"] == pytest.approx(3040.0)
    assert (best[0]["frontiers"], best[0]["failed_frontiers"]) == (3, 0)
    assert (best[1]["best_max_loras"], best[1]["best_served"], best[1]["failed_frontiers"]) == (16, 16, 1)

    frontiers, labels = compute_labels(TABLE, threshold=0.2)
    assert _by_key(frontiers)[1, 16]["frontier_served"] == 32
    assert _by_key(frontiers)[0, 8]["frontier_served"] == 64  # 0.80 is not starved at 0.2
    with pytest.raises(LoratwinError, match="--threshold"):
        compute_labels(TABLE, threshold=1.5)


def test_ties_prefer_fewer_slots_then_fewer_served():
    table = rows_to_table([row(0, 8, 16, 0.99, tok_s=500.0), row(0, 16, 16, 0.99, tok_s=500.0)])
    (label,) = compute_labels(table)[1].to_pylist()
    assert (label["best_max_loras"], label["best_served"]) == (8, 16)


def test_written_as_parquet_and_csv(tmp_path):
    store = tmp_path / "results"
    with ResultStore(store, {"name": "hand-made"}) as writer:
        for record in TABLE.to_pylist():
            writer.add(record)
    data = write_labels(store, out=tmp_path / "labels")
    assert data["workloads"] == 2 and data["frontiers"] == 5 and data["runs"] == 14
    assert data["frontier_status"] == {"found": 2, "starved_at_smallest": 1, "not_starved_in_grid": 1, "failed": 1}
    labels = pq.read_table(tmp_path / "labels" / "labels.parquet")
    assert labels.num_rows == 2 and labels.column("best_served").to_pylist() == [32, 16]
    with open(tmp_path / "labels" / "frontiers.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5
    assert rows[0]["rate_levels"] == "1.6,0.8,0.4" and rows[0]["rank_levels"] == "8,16"
    assert rows[0]["frontier_served"] == "32"


def test_slos_move_the_frontier_to_the_last_point_meeting_them():
    # p99 TTFT is 100 ms per served adapter: at 3000 ms 16 served pass, 32 break it
    frontiers, labels = compute_labels(TABLE, slos=parse_slos(["ttft_p99:3000"]))
    f = _by_key(frontiers)
    assert (f[0, 8]["frontier_served"], f[0, 8]["first_starved_served"], f[0, 8]["first_refused_by"]) == (16, 32, "ttft_p99")
    assert (f[0, 16]["frontier_served"], f[0, 16]["status"]) == (16, "found")
    assert (f[0, 32]["status"], f[0, 32]["first_refused_by"]) == ("starved_at_smallest", "starved")  # starving comes first
    assert f[1, 8]["status"] == "failed"
    assert {r["slos"] for r in frontiers.to_pylist()} == {"ttft_p99:3000"}
    best = {r["workload_index"]: r for r in labels.to_pylist()}
    assert (best[0]["best_max_loras"], best[0]["best_served"], best[0]["slos"]) == (8, 16, "ttft_p99:3000")
    # without SLOs the columns say so, and the labels are the starvation labels
    frontiers, labels = compute_labels(TABLE)
    assert {r["slos"] for r in labels.to_pylist()} == {None}
    assert _by_key(frontiers)[0, 8]["first_refused_by"] == "starved"
    # a loose SLO changes nothing; every SLO must hold
    loose = compute_labels(TABLE, slos=parse_slos(["ttft_p99:1e6", "itl_p99:50"]))[1].column("best_served").to_pylist()
    assert loose == labels.column("best_served").to_pylist()
    tight = compute_labels(TABLE, slos=parse_slos(["ttft_p99:1e6", "itl_p99:49"]))[1].column("best_served").to_pylist()
    assert tight == [None, None]


def test_a_run_without_the_metric_breaks_the_slo_and_a_store_without_it_is_refused():
    table = rows_to_table([row(0, 8, 16, 0.99, p99_tpot_ms=30.0), row(0, 8, 32, 0.99, p99_tpot_ms=None)])
    (f,) = compute_labels(table, slos=parse_slos(["tpot_p99:40"]))[0].to_pylist()
    assert (f["frontier_served"], f["first_refused_by"]) == (16, "tpot_p99")
    with pytest.raises(InputError, match="--slo tpot_p99:40: .* hold no p99_tpot_ms"):
        compute_labels(rows_to_table([row(0, 8, 16, 0.99)]), slos=parse_slos(["tpot_p99:40"]))


def test_labels_written_under_slos_record_them(tmp_path):
    store = tmp_path / "results"
    with ResultStore(store, {"name": "hand-made"}) as writer:
        for record in TABLE.to_pylist():
            writer.add(record)
    data = write_labels(store, out=tmp_path / "labels", slos=parse_slos(["ttft_p99:3000", "itl_p99:60"]))
    assert data["slos"] == ["ttft_p99:3000", "itl_p99:60"]
    with open(tmp_path / "labels" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["slos"] for r in rows] == ["ttft_p99:3000,itl_p99:60"] * 2 and rows[0]["best_served"] == "16"
    with pytest.raises(InputError, match=f"the runs in {store} hold no p99_tpot_ms"):
        write_labels(store, out=tmp_path / "labels2", slos=parse_slos(["tpot_p99:40"]))


def test_labels_slo_on_the_command_line(tmp_path):
    from cli.inprocess import run_main  # tests/ is on sys.path

    store = tmp_path / "results"
    with ResultStore(store, {"name": "hand-made"}) as writer:
        for record in TABLE.to_pylist():
            writer.add(record)
    code, out, err = run_main(["labels", str(store), "--slo", "ttft_p99:3000", "--json"])
    assert code == 0, err
    data = json.loads(out)
    assert data["slos"] == ["ttft_p99:3000"] and [r["best_served"] for r in data["labels"]] == [16, 16]
    code, out, err = run_main(["labels", str(store), "--slo", "ttft_p99:3000", "--out", str(tmp_path / "l2")])
    assert code == 0, err
    assert "threshold 0.1, SLOs ttft_p99:3000" in out
