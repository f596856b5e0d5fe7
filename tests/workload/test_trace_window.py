"""A replayed trace is judged over its own window by default, and offers what it holds (not the
`rate` column of adapters.csv): a 600 s trace no longer reports a sixth of its throughput."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from loratwin.errors import InputError
from loratwin.twin import ServerConfig, simulate
from loratwin.workload import RequestTable, load_trace
from loratwin.workload.describe import describe_trace
from loratwin.workload.trace import replay_window, trace_window_s, with_trace_rates

from .test_trace import write_trace


def table(times):
    n = len(times)
    return RequestTable(
        arrival_s=np.asarray(times, np.float64), adapter=np.arange(n, dtype=np.int32) % 2,
        prompt_tokens=np.full(n, 100, np.int32), output_tokens=np.full(n, 50, np.int32),
    )


@pytest.mark.parametrize(("last", "window"), [(599.95, 600.0), (600.0, 601.0), (0.0, 1.0), (0.2, 1.0)])
def test_the_window_holds_every_arrival(last, window):
    requests = table([0.0, last])
    assert trace_window_s(requests) == window
    assert np.all(requests.arrival_s < window)


def test_what_the_window_means_is_said():
    requests = table([0.0, 10.0, 599.5])
    window, note = replay_window(requests, None)
    assert window == 600.0 and note.startswith("window: 600 s, the trace's own")
    assert replay_window(requests, 600.0) == (600.0, None)
    window, note = replay_window(requests, 3600.0)
    assert window == 3600.0 and "averaged over the whole 3600 s window" in note
    window, note = replay_window(requests, 300.0)
    assert window == 300.0 and "1 of the trace's 3 requests arrive after the 300 s window" in note
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="--duration must be a finite number of seconds > 0"):
            replay_window(requests, bad)


def _trace_dir(tmp_path, rate_column: float):
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 600, 3000))  # 5 req/s for 600 s
    lines = [f"{t:.6f},a{i % 5},{100 + i % 50},{20 + i % 30}" for i, t in enumerate(times)]
    adapters = [f"a{i},8,{rate_column}" for i in range(5)]
    return write_trace(tmp_path / "trace", lines, adapters, adapters_header="adapter_id,rank,rate")


def test_offered_comes_from_the_trace_not_the_rate_column(tmp_path):
    workload, requests = load_trace(_trace_dir(tmp_path, rate_column=20.0))
    assert workload.aggregate_rate_req_s == 100.0  # what adapters.csv says
    replayed = with_trace_rates(workload, requests, 600.0)
    assert replayed.aggregate_rate_req_s == pytest.approx(5.0)
    assert [a.id for a in replayed.adapters] == [a.id for a in workload.adapters]
    summary = describe_trace(workload, requests)
    assert summary["duration_s"] == 600.0 and summary["expected_requests"] == pytest.approx(3000)
    assert summary["aggregate_rate_req_s"] == pytest.approx(5.0)
    assert summary["trace"]["rate_column_req_s"] == 100.0
    tokens = int(requests.prompt_tokens.sum()) + int(requests.output_tokens.sum())
    assert summary["offered_tok_s"] == pytest.approx(tokens / 600.0)


def test_simulate_replays_over_the_trace_window_by_default(tmp_path):
    workload, requests = load_trace(_trace_dir(tmp_path, rate_column=20.0))
    result = simulate(workload, ServerConfig(max_loras=5), "llama-3.1-8b-instruct", requests=requests)
    assert result.config["duration_s"] == 600.0
    assert result.summary["arrived"] == 3000
    assert result.summary["throughput_over_offered"] > 0.9


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loratwin.cli", *args], capture_output=True, text=True, timeout=300)


def test_the_commands_use_the_trace_window_and_say_so(tmp_path):
    trace = _trace_dir(tmp_path, rate_column=20.0)
    proc = run_cli("simulate", "--trace", str(trace), "--max-loras", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "window: 600 s, the trace's own" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["config"]["duration_s"] == 600.0
    assert doc["config"]["workload"]["aggregate_rate_req_s"] == pytest.approx(5.0)
    assert doc["summary"]["throughput_over_offered"] > 0.9

    proc = run_cli("simulate", "--trace", str(trace), "--max-loras", "5", "--duration", "3600", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "averaged over the whole 3600 s window" in proc.stderr

    proc = run_cli("workload", "describe", str(trace), "--json")
    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout)
    assert described["duration_s"] == 600.0 and described["aggregate_rate_req_s"] == pytest.approx(5.0)

    for command in (["simulate", "--trace", str(trace), "--max-loras", "5"], ["workload", "describe", str(trace)]):
        proc = run_cli(*command, "--duration", "0")
        assert proc.returncode == 2 and proc.stderr.strip() == "error: --duration must be a positive number of seconds, got 0"
