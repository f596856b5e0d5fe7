"""The `sweep` and `labels` commands, on the main CLI's app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from loratwin.cli import app
from loratwin.errors import LoratwinError

from .conftest import SMALL_GRID


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_sweep_then_labels_as_json(write_grid, tmp_path):
    grid = write_grid(SMALL_GRID)
    out = tmp_path / "results"
    result = invoke("sweep", str(grid), "--out", str(out), "--workers", "1", "--max-configs", "7", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["configs"] == 7 and summary["ran"] == 7 and summary["failed"] == 0
    assert summary["mode"] == "full" and summary["workers"] == 1 and summary["store_bytes"] > 0

    result = invoke("labels", str(out), "--json", "--threshold", "0.1")
    assert result.exit_code == 0, result.output
    labels = json.loads(result.stdout)
    assert labels["workloads"] == 1 and labels["frontiers"] == 2 and labels["runs"] == 7
    (label,) = labels["labels"]
    assert label["rate_levels"] == [1.6, 0.8, 0.4] and label["best_served"] is not None
    assert (out / "labels" / "labels.csv").exists() and (out / "labels" / "frontiers.parquet").exists()

    # plain output names what it did
    result = invoke("labels", str(out), "--out", str(tmp_path / "elsewhere"))
    assert result.exit_code == 0 and "1 workloads, 2 frontiers" in result.stdout
    assert (tmp_path / "elsewhere" / "labels.parquet").exists()


def test_paper_grid_restricted_to_a_slice(tmp_path):
    # the last workload of the paper grid is its lightest: 2 one-hour runs take well under a second
    result = invoke("sweep", "paper", "--out", str(tmp_path / "p"), "--workloads", "839:", "--max-configs", "2",
                    "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["grid"] == "paper" and summary["workloads"] == 1 and summary["ran"] == 2
    # 16/16/32 ranks: max_loras from 128 up cannot start, but the first 2 runs (max_loras 16) come before them
    assert summary["skipped_infeasible"] == 0


def test_search_flag(write_grid, tmp_path):
    result = invoke("sweep", str(write_grid(SMALL_GRID)), "--out", str(tmp_path / "s"), "--search", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "search of grid small" in result.stdout and "run now:" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "nope.yaml", "--out", "x"], "nope.yaml: no such grid file, and not a built-in grid (built-in: paper)"),
        (["sweep", "GRID", "--out", "x", "--search", "--max-configs", "3"], "--max-configs limits a full sweep"),
        (["sweep", "GRID", "--out", "x", "--address", "ray://h:1"], "--address is for --backend ray"),
        (["sweep", "GRID", "--out", "x", "--workloads", "a:b"], "--workloads: expected START:STOP[:STEP]"),
        (["sweep", "GRID", "--out", "x", "--workloads", "5:"], "--workloads 5: selects none of the grid's 2 workloads"),
        (["sweep", "GRID", "--out", "x", "--workloads", "5:2"], "--workloads 5:2 selects none"),
        (["sweep", "GRID", "--out", "x", "--profile", "nope"], "profile: unknown profile 'nope'"),
        (["labels", "x", "--threshold", "0"], "--threshold: must be strictly between 0 and 1"),
    ],
)
def test_mistakes_are_loratwin_errors(args, message, write_grid, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = write_grid(SMALL_GRID)
    if args[0] == "labels":
        invoke("sweep", str(grid), "--out", "x", "--workers", "1", "--max-configs", "1")
    result = invoke(*[str(grid) if a == "GRID" else a for a in args])
    assert isinstance(result.exception, LoratwinError), result.output
    assert message in str(result.exception)


def test_labels_of_a_directory_without_results(tmp_path):
    result = invoke("labels", str(tmp_path))
    assert isinstance(result.exception, LoratwinError)
    assert "not a sweep results directory" in str(result.exception)
