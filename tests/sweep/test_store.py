"""The results store: commits, recovery after a crash at any point, and a sweep killed for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from loratwin.sweep.execute import run_sweep
from loratwin.sweep.grid import expand, grid_from_yaml
from loratwin.sweep.store import MANIFEST, PARTS, SCHEMA, ResultStore, StoreError, read_results, rows_to_table

from .conftest import CLI_SCRIPT

# 60 runs of 5 simulated minutes
KILL_GRID = """\
name: kill-test
duration_s: 300
served: {start: 8, stop: 64, step: 8}
max_loras: [8, 16, 32]
rates: [[0.8, 0.4, 0.2], [0.4, 0.2, 0.1], [0.2, 0.1, 0.05]]
ranks: [[8, 16]]
server: {client_max_waiting: 25500}
"""


def fake_record(key: str, status: str = "ok", ratio: float | None = 0.95) -> dict:
    record = {name: None for name in SCHEMA.names}
    record.update(config_key=key, workload_key="w", workload_index=0, served=int(key[1:]), max_loras=1, status=status)
    record["throughput_over_offered"] = ratio
    return record


def committed_keys(root: Path) -> list[str]:
    manifest = json.loads((root / MANIFEST).read_text())
    keys = []
    for part in manifest["parts"]:
        keys += pq.read_table(root / PARTS / part["file"], columns=["config_key"]).column(0).to_pylist()
    return keys


def test_commit_reopen_and_compaction(tmp_path):
    root = tmp_path / "store"
    with ResultStore(root, {"name": "g"}, flush_rows=2, compact_above=3) as store:
        for i in range(7):
            store.add(fake_record(f"k{i}"))
        # flushed in pairs, compacted when a fourth part came
        assert len(json.loads((root / MANIFEST).read_text())["parts"]) <= 3
    # closing flushes the rest and leaves one sorted part
    assert sorted(committed_keys(root)) == [f"k{i}" for i in range(7)]
    assert len(list((root / PARTS).iterdir())) == 1
    with ResultStore(root, {"name": "g"}) as store:
        assert set(store.done) == {f"k{i}" for i in range(7)}
        assert store.done["k3"] == {"status": "ok", "throughput_over_offered": 0.95}
        with pytest.raises(StoreError, match="already stored"):
            store.add(fake_record("k3"))
    assert read_results(root).num_rows == 7


def test_refuses_another_grid_and_a_second_writer(tmp_path):
    root = tmp_path / "store"
    with ResultStore(root, {"name": "g"}), pytest.raises(StoreError, match="another sweep is writing"):
        ResultStore(root, {"name": "g"})
    with pytest.raises(StoreError, match="holds results of another grid"):
        ResultStore(root, {"name": "other"})
    with pytest.raises(StoreError, match="not a sweep results directory"):
        read_results(tmp_path / "nothing")


def _write_part(root: Path, name: str, keys: list[str]) -> None:
    pq.write_table(rows_to_table([fake_record(k) for k in keys]), root / PARTS / name)


def test_recovery_from_each_crash_point(tmp_path):
    root = tmp_path / "store"
    with ResultStore(root, {"name": "g"}) as store:
        for i in range(4):
            store.add(fake_record(f"k{i}"))
    (listed,) = json.loads((root / MANIFEST).read_text())["parts"]
    # killed while writing: temp files
    (root / PARTS / ".part-000009-aa.parquet.123.tmp").write_bytes(b"half a parquet file")
    (root / ".manifest.json.123.tmp").write_text("{")
    # killed after a part was renamed in but before the manifest listed it: adopted
    _write_part(root, "part-000007-bb.parquet", ["k4", "k5"])
    # killed in a compaction before the manifest switched: the merged part repeats listed runs, deleted
    _write_part(root, "part-000008-cc.parquet", ["k0", "k1", "k2", "k3", "k4"])
    with ResultStore(root, {"name": "g"}) as store:
        assert set(store.done) == {f"k{i}" for i in range(6)}
    keys = committed_keys(root)
    assert sorted(keys) == [f"k{i}" for i in range(6)] and len(keys) == len(set(keys))
    assert not list(root.glob("**/*.tmp"))
    assert listed["file"] not in os.listdir(root / PARTS)  # compacted away on close
    assert read_results(root).num_rows == 6


def test_a_manifest_listing_a_missing_part_is_reported_and_resuming_reruns_its_runs(tmp_path):
    root = tmp_path / "store"
    with ResultStore(root, {"name": "g"}) as store:
        store.add(fake_record("k1"))
    for part in (root / PARTS).iterdir():
        part.unlink()
    with pytest.raises(StoreError, match=r"part-.*\.parquet: a part file listed in the manifest of .* is missing; "
                                         r"resume the sweep \(loratwin sweep GRID --out"):
        read_results(root)
    with ResultStore(root, {"name": "g"}) as store:
        assert store.done == {}
        assert len(store.set_aside) == 1 and "is missing; its 1 runs are run again" in store.set_aside[0]
    assert read_results(root).num_rows == 0


def _start_sweep(grid: Path, out: Path) -> subprocess.Popen:
    # the real CLI, committing finished runs every 0.2 s so that kills land between many parts
    script = "import loratwin.sweep.store as s; s.FLUSH_INTERVAL_S = 0.2\n" + CLI_SCRIPT
    return subprocess.Popen(
        [sys.executable, "-c", script, "sweep", str(grid), "--out", str(out), "--workers", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows_committed(out: Path) -> int:
    try:
        return sum(p["rows"] for p in json.loads((out / MANIFEST).read_text())["parts"])
    except (FileNotFoundError, ValueError):
        return 0


def _descendants(pid: int) -> set[int]:
    """Processes below `pid` (Linux /proc), e.g. the forkserver and the workers of a sweep."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _interrupt_after(process: subprocess.Popen, out: Path, at_least: int, sig: int) -> set[int]:
    """Send `sig` once `at_least` runs are committed; returns the sweep's helper processes."""
    deadline = time.monotonic() + 60
    while _rows_committed(out) < at_least:
        assert process.poll() is None, f"the sweep ended before it could be interrupted: {process.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    helpers = _descendants(process.pid)
    process.send_signal(sig)
    process.wait(timeout=30)
    return helpers


@pytest.mark.slow
def test_sweep_killed_then_resumed_equals_an_uninterrupted_sweep(tmp_path):
    grid_path = tmp_path / "grid.yaml"
    grid_path.write_text(KILL_GRID)
    total = len(expand(grid_from_yaml(KILL_GRID, "grid.yaml")).runs)
    assert total == 60
    out = tmp_path / "resumed"

    first = _start_sweep(grid_path, out)
    helpers = _interrupt_after(first, out, 1, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL
    if Path("/proc").is_dir():
        # the killed sweep's workers notice and exit, with its forkserver
        assert helpers
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in helpers)
    after_kill = _rows_committed(out)
    assert 0 < after_kill < total

    second = _start_sweep(grid_path, out)
    _interrupt_after(second, out, after_kill + 1, signal.SIGINT)
    assert second.returncode == 130, second.stderr.read()
    after_interrupt = _rows_committed(out)
    assert after_kill < after_interrupt < total

    third = _start_sweep(grid_path, out)
    stdout, stderr = third.communicate(timeout=120)
    assert third.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["already_done"] == after_interrupt
    assert summary["ran"] == total - after_interrupt

    # the reference: one uninterrupted sweep, in this process and with one worker
    reference = tmp_path / "reference"
    run_sweep(grid_from_yaml(KILL_GRID, "grid.yaml"), reference, workers=1)
    resumed_table, reference_table = read_results(out), read_results(reference)
    keys = committed_keys(out)
    assert len(keys) == len(set(keys)) == total
    assert resumed_table.num_rows == total
    assert resumed_table.equals(reference_table)
    assert set(resumed_table.column("status").to_pylist()) == {"ok"}
    assert not list(out.glob("**/*.tmp"))


def test_rerunning_a_finished_sweep_runs_nothing(tmp_path):
    grid = grid_from_yaml(KILL_GRID.replace("stop: 64", "stop: 16"), "grid.yaml")
    first = run_sweep(grid, tmp_path / "out", workers=1)
    again = run_sweep(grid, tmp_path / "out", workers=1)
    assert first.ran == first.configs and again.ran == 0 and again.already_done == first.configs
    shutil.rmtree(tmp_path / "out")
