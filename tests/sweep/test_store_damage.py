"""A damaged results store: a part file that cannot be read is named, set aside and its runs rerun,
every other result kept; readers skip it with a warning; a changed grid is refused naming the fields."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from loratwin.cli import app
from loratwin.sweep.execute import run_sweep
from loratwin.sweep.grid import grid_from_yaml
from loratwin.sweep.labels import write_labels
from loratwin.sweep.store import GRID_FILE, MANIFEST, PARTS, ResultStore, StoreError, read_results

from .conftest import SMALL_GRID
from .test_store import committed_keys, fake_record

DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: b"PAR1" + bytes(range(256)) * 4 + b"PAR1",
    "empty": lambda data: b"",
}


def _three_parts(root):
    """A store of three committed parts: k0-k1, k2-k3, k4-k5 (in manifest order)."""
    store = ResultStore(root, {"name": "g"}, flush_rows=2)
    for i in range(6):
        store.add(fake_record(f"k{i}"))
    store.close(compact=False)
    return [p["file"] for p in json.loads((root / MANIFEST).read_text())["parts"]]


def _damage(path, how: str) -> None:
    path.write_bytes(DAMAGE[how](path.read_bytes()))


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_resume_sets_a_damaged_part_aside_and_keeps_the_rest(tmp_path, how):
    root = tmp_path / "store"
    parts = _three_parts(root)
    _damage(root / PARTS / parts[1], how)
    with ResultStore(root, {"name": "g"}) as store:
        (line,) = store.set_aside
        assert parts[1] in line and "unreadable part file" in line and "moved to" in line
        # the damaged part's runs are not done (they rerun); every other run is kept
        assert set(store.done) == {"k0", "k1", "k4", "k5"}
        store.add(fake_record("k2"))
        store.add(fake_record("k3"))
    assert (root / PARTS / (parts[1] + ".corrupt")).exists()
    assert sorted(committed_keys(root)) == [f"k{i}" for i in range(6)]
    assert read_results(root).num_rows == 6
    with ResultStore(root, {"name": "g"}) as store:  # once set aside, nothing more to say
        assert store.set_aside == []


def test_a_second_damaged_copy_does_not_overwrite_the_first(tmp_path):
    root = tmp_path / "store"
    parts = _three_parts(root)
    (root / PARTS / (parts[0] + ".corrupt")).write_bytes(b"kept from before")
    _damage(root / PARTS / parts[0], "garbage")
    with ResultStore(root, {"name": "g"}) as store:
        assert set(store.done) == {"k2", "k3", "k4", "k5"}
    assert (root / PARTS / (parts[0] + ".corrupt")).read_bytes() == b"kept from before"
    assert (root / PARTS / (parts[0] + ".corrupt.1")).exists()


def test_readers_skip_a_damaged_part_with_a_warning_and_leave_the_store_alone(tmp_path):
    root = tmp_path / "store"
    parts = _three_parts(root)
    _damage(root / PARTS / parts[2], "truncated")
    before = (root / MANIFEST).read_text()
    skipped: list[str] = []
    table = read_results(root, skipped=skipped)
    assert sorted(table.column("config_key").to_pylist()) == ["k0", "k1", "k2", "k3"]
    (line,) = skipped
    assert parts[2] in line and "its 2 runs are left out" in line
    with pytest.warns(UserWarning, match="unreadable part file"):
        assert read_results(root).num_rows == 4
    assert (root / MANIFEST).read_text() == before and (root / PARTS / parts[2]).exists()


def test_labels_warn_and_use_the_rest(tmp_path):
    out = tmp_path / "results"
    run_sweep(grid_from_yaml(SMALL_GRID, "grid.yaml"), out, workers=1, max_configs=4)
    # a second, damaged part listed in the manifest
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["parts"].append({"file": "part-000099-deadbeef.parquet", "rows": 3, "failed": 0})
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / PARTS / "part-000099-deadbeef.parquet").write_bytes(b"not parquet at all")
    data = write_labels(out)
    assert data["runs"] == 4 and len(data["warnings"]) == 1
    result = CliRunner().invoke(app, ["labels", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "part-000099-deadbeef.parquet" in result.stderr
    assert json.loads(result.stdout)["runs"] == 4


def test_a_sweep_reruns_the_runs_of_a_damaged_part(tmp_path):
    grid = grid_from_yaml(SMALL_GRID, "grid.yaml")
    out = tmp_path / "results"
    first = run_sweep(grid, out, workers=1, max_configs=4)
    (part,) = json.loads((out / MANIFEST).read_text())["parts"]
    _damage(out / PARTS / part["file"], "truncated")
    heard: list[str] = []
    again = run_sweep(grid, out, workers=1, max_configs=4, on_warning=heard.append)
    assert again.ran == first.ran == 4 and again.already_done == 0
    assert again.set_aside == heard and part["file"] in heard[0]
    assert read_results(out).num_rows == 4


def test_a_changed_grid_is_refused_naming_what_changed(tmp_path):
    root = tmp_path / "store"
    grid = {"name": "g", "served": [8, 16], "server": {"max_num_seqs": 2048, "client_max_waiting": None}}
    ResultStore(root, grid).close()
    changed = {"name": "g", "served": [8, 16, 24], "server": {"max_num_seqs": 256, "client_max_waiting": None}}
    with pytest.raises(StoreError, match=r"changed: served \(\[8, 16\] -> \[8, 16, 24\]\), "
                                         r"server\.max_num_seqs \(2048 -> 256\); give a new --out"):
        ResultStore(root, changed)
    # lists are compared item by item; a field only one side has is "absent" on the other
    arrival = {"name": "g", "arrival": [{"kind": "poisson"}, {"kind": "unpredictable", "period_s": 300}]}
    ResultStore(tmp_path / "other", arrival).close()
    newer = {"name": "g", "arrival": [{"kind": "poisson"}, {"kind": "unpredictable", "period_s": 300, "schedule": None}]}
    with pytest.raises(StoreError, match=r"changed: arrival\[1\]\.schedule \(absent -> null\)"):
        ResultStore(tmp_path / "other", newer)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (GRID_FILE, "{not json", r"grid\.json: unreadable grid file"),
        (MANIFEST, "[1, 2]", r"manifest\.json: not a loratwin sweep manifest"),
        (MANIFEST, '{"format": "loratwin-sweep/1", "parts": [{"file": "../../etc/passwd"}]}', r"damaged manifest"),
        (MANIFEST, b"\xff\xfe binary", r"manifest\.json: unreadable manifest"),
    ],
)
def test_damaged_grid_or_manifest_files_are_one_error(tmp_path, name, content, expected):
    root = tmp_path / "store"
    ResultStore(root, {"name": "g"}).close()
    path = root / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(StoreError, match=expected):
        ResultStore(root, {"name": "g"})
    if name == MANIFEST:
        with pytest.raises(StoreError, match=expected):
            read_results(root)


def test_parquet_files_written_by_the_store_are_plain_parquet(tmp_path):
    root = tmp_path / "store"
    parts = _three_parts(root)
    assert pq.read_table(root / PARTS / parts[0]).num_rows == 2
