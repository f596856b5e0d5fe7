"""Runners: failures are recorded and do not stop a sweep; results do not depend on the runner."""

from __future__ import annotations

import re
import sys

import pytest
import yaml

from loratwin.errors import LoratwinError
from loratwin.profiles import load_profile
from loratwin.sweep import runners
from loratwin.sweep.execute import run_sweep
from loratwin.sweep.grid import grid_from_yaml
from loratwin.sweep.runners import make_runner
from loratwin.sweep.store import read_results

from .conftest import SMALL_GRID


def _broken_profile(tmp_path):
    """The llama profile with a 64-token KV cache at max_lora_rank 16 (and no memory model): such
    runs start, and fail at run time on the first request that does not fit."""
    data = load_profile("llama-3.1-8b-instruct").model_dump(mode="json")
    data["kv"]["memory"] = None
    data["kv"]["capacity_tokens"]["16"] = {slots: 64 for slots in data["kv"]["capacity_tokens"]["16"]}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path):
    # rank mix 8 runs, rank mix 8/16 fails in the workers (a real pool of two)
    grid = grid_from_yaml(
        SMALL_GRID.replace("ranks: [[8, 16]]", "ranks: [[8], [8, 16]]") + f"profile: {_broken_profile(tmp_path)}\n",
        "grid.yaml",
    )
    summary = run_sweep(grid, tmp_path / "out", workers=2)
    assert summary.ran == summary.configs == 28
    assert summary.failed == 14
    table = read_results(tmp_path / "out").to_pylist()
    failed = [r for r in table if r["status"] == "failed"]
    assert len(failed) == 14 and all(r["rank_levels"] == [8, 16] for r in failed)
    assert all(re.search(r"InputError: request \d+ .* needs \d+ KV blocks, more than the 3", r["error"]) for r in failed)
    assert all(r["total_tok_s"] is None for r in failed)
    ok = [r for r in table if r["status"] == "ok"]
    assert len(ok) == 14 and all(r["total_tok_s"] > 0 and r["error"] is None for r in ok)
    # failures count as done: a rerun does not repeat them
    assert run_sweep(grid, tmp_path / "out", workers=1).ran == 0


def test_an_unexpected_exception_fails_only_its_run(tmp_path, monkeypatch):
    real = runners.simulate

    def flaky(workload, server, profile, **kwargs):
        if len(workload.adapters) == 16:
            raise RuntimeError("numerical trouble")
        return real(workload, server, profile, **kwargs)

    monkeypatch.setattr(runners, "simulate", flaky)
    summary = run_sweep(grid_from_yaml(SMALL_GRID, "grid.yaml"), tmp_path / "out", workers=1)
    table = read_results(tmp_path / "out").to_pylist()
    failed = [r for r in table if r["status"] == "failed"]
    assert summary.failed == len(failed) == 4  # served 16 at max_loras 8 and 16, in both workloads
    assert {r["served"] for r in failed} == {16}
    assert failed[0]["error"] == "RuntimeError: numerical trouble"


def test_runner_options_are_checked(tmp_path):
    profile = load_profile("llama-3.1-8b-instruct")
    with pytest.raises(LoratwinError, match="--workers: must be >= 1"):
        make_runner(profile, workers=0)
    with pytest.raises(LoratwinError, match="--address is for --backend ray"):
        make_runner(profile, address="ray://head:10001")
    with pytest.raises(LoratwinError, match="--backend: expected one of local, ray"):
        make_runner(profile, backend="slurm")


def test_ray_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(LoratwinError, match=r"--backend ray needs Ray: pip install 'loratwin\[ray\]'"):
        make_runner(load_profile("llama-3.1-8b-instruct"), backend="ray")


@pytest.mark.slow
def test_ray_runner_gives_the_same_results_as_local(tmp_path):
    pytest.importorskip("ray")
    grid = grid_from_yaml(SMALL_GRID, "grid.yaml")
    on_ray = run_sweep(grid, tmp_path / "ray", backend="ray", workers=2)
    assert on_ray.backend == "ray" and on_ray.ran == 14 and on_ray.failed == 0
    run_sweep(grid, tmp_path / "local", workers=1)
    assert read_results(tmp_path / "ray").equals(read_results(tmp_path / "local"))
