"""Work too large for the memory limit is refused within seconds, with one line that gives the
estimate and the limit (exit status 2); --max-memory and LORATWIN_MAX_MEMORY move the limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import loratwin

ENV_VAR = "LORATWIN_MAX_MEMORY"
SRC = str(Path(loratwin.__file__).parents[1])
SMALL = ["simulate", "--served", "8", "--rates", "0.2", "--ranks", "8", "--max-loras", "4", "--duration", "60"]
REFUSAL_S = 5.0


def run_cli(*args: str, limit: str | None = None) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
    if limit is not None:
        env[ENV_VAR] = limit
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "loratwin.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)
    return proc, time.perf_counter() - started


def assert_refused(proc: subprocess.CompletedProcess, seconds: float, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = lines[0]
    assert "of memory" in line and "(limit " in line, line
    for needle in needles:
        assert needle in line, line
    assert seconds < REFUSAL_S, f"refused after {seconds:.1f} s"
    assert proc.stdout == ""
    return line


@pytest.fixture
def zipf_1e8(tmp_path) -> Path:
    path = tmp_path / "zipf.yaml"
    path.write_text("layout: {kind: zipf, served: 100000000, total_rate_req_s: 40, exponent: 1.0, ranks: [8, 16]}\n")
    return path


def test_a_billion_adapters_are_refused_at_once():
    proc, seconds = run_cli("simulate", "--served", "1000000000", "--rates", "1", "--ranks", "8", "--max-loras", "8")
    assert_refused(proc, seconds, "error: simulate: about ", "needed for 1e9 adapters and ~3.6e12 requests over 3600 s",
                   "set --max-memory or LORATWIN_MAX_MEMORY to raise it")


def test_ten_million_adapters_are_refused_at_once():
    proc, seconds = run_cli("simulate", "--served", "10000000", "--rates", "1", "--ranks", "8", "--max-loras", "8")
    assert_refused(proc, seconds, "1e7 adapters and ~3.6e10 requests")


def test_a_zipf_layout_of_1e8_adapters_is_refused_by_simulate_place_and_describe(zipf_1e8):
    for command, needle in ((["simulate", "--workload", str(zipf_1e8), "--max-loras", "8"], "simulate: about"),
                            (["place", str(zipf_1e8)], "place: about"),
                            (["recommend", str(zipf_1e8)], "recommend: about"),
                            (["workload", "describe", str(zipf_1e8)], "workload describe: about")):
        proc, seconds = run_cli(*command)
        assert_refused(proc, seconds, needle, "1e8 adapters")


def test_the_environment_limit_refuses_a_small_simulation_and_the_flag_raises_it():
    proc, seconds = run_cli(*SMALL, limit="1M")
    assert_refused(proc, seconds, "simulate: about ", "8 adapters and ~",
                   "limit 1.0 MB, from LORATWIN_MAX_MEMORY: raise it to allow this")
    proc, _ = run_cli(*SMALL, "--json", "--max-memory", "4G", limit="1M")
    assert proc.returncode == 0, proc.stderr
    assert '"arrived"' in proc.stdout
    proc, seconds = run_cli(*SMALL, "--max-memory", "1M")
    assert_refused(proc, seconds, "limit 1.0 MB")


@pytest.mark.parametrize(("flag", "limit", "named"), [("12 parsecs", None, "--max-memory"),
                                                      (None, "lots", "LORATWIN_MAX_MEMORY")])
def test_a_bad_limit_is_one_error_naming_the_flag_or_variable(flag, limit, named):
    args = [*SMALL, "--max-memory", flag] if flag else SMALL
    proc, _ = run_cli(*args, limit=limit)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {named}: expected a size such as 8G, 500M or 12GiB")
    assert len(proc.stderr.splitlines()) == 1


def test_a_grid_too_large_is_refused_before_it_is_expanded(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("served: {start: 1, stop: 1000000000}\nmax_loras: [8]\nrates: [[1.0]]\nranks: [[8]]\n")
    proc, seconds = run_cli("sweep", str(grid), "--out", str(tmp_path / "out"))
    assert_refused(proc, seconds, "sweep: about", "a grid axis of 1e9 values")
    assert not (tmp_path / "out").exists()


def test_place_refuses_a_long_adapters_csv_before_reading_it(tmp_path):
    path = tmp_path / "adapters.csv"
    path.write_text("adapter_id,rank,rate\n" + "".join(f"adapter-{i},8,0.01\n" for i in range(100_000)))
    proc, seconds = run_cli("place", str(path), "--max-memory", "500M")
    assert_refused(proc, seconds, "place: about", "needed for placing 100,", "limit 500 MB")
