"""End-to-end: the `loratwin` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loratwin.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


SMALL = ["--served", "12", "--rates", "0.4,0.2,0.1", "--ranks", "8,16", "--max-loras", "4", "--duration", "120"]


def test_simulate_prints_a_summary_table():
    proc = run_cli("simulate", *SMALL)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for needle in ("throughput input / output / total", "TTFT mean / p50 / p99", "ITL mean / p50 / p99",
                   "preemptions", "adapter loads CPU->GPU / disk->CPU", "offered load", "starvation",
                   "ShareGPT"):
        assert needle in out, needle


@pytest.mark.slow
def test_simulate_json_is_one_document_with_the_same_data():
    proc = run_cli("simulate", *SMALL, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"config", "summary", "adapters"}
    s = doc["summary"]
    assert s["total_tok_s"] == pytest.approx(s["input_tok_s"] + s["output_tok_s"])
    assert doc["config"]["server"]["max_cpu_loras"] == 12  # default: served adapters
    assert doc["config"]["server"]["max_lora_rank"] == 16  # default: largest rank
    assert doc["config"]["server"]["max_num_seqs"] == 2048
    assert len(doc["adapters"]) == 12
    # deterministic: the same command gives the same numbers
    again = json.loads(run_cli("simulate", *SMALL, "--json").stdout)
    assert again == doc


def test_simulate_out_writes_parquet(tmp_path):
    proc = run_cli("simulate", *SMALL, "--json", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    requests = pq.read_table(tmp_path / "run" / "requests.parquet").to_pydict()
    assert len(requests["request_id"]) == doc["summary"]["arrived"]
    assert sum(requests["completed"]) == doc["summary"]["completed"]
    series = pq.read_table(tmp_path / "run" / "timeseries.parquet").column_names
    assert {"t_s", "running", "waiting", "kv_usage"} <= set(series)
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == doc


def test_simulate_from_workload_yaml(tmp_path):
    path = tmp_path / "wl.yaml"
    path.write_text(
        "adapters:\n"
        "  - {id: support, rank: 8, rate_req_s: 0.5}\n"
        "  - {id: legal, rank: 16, rate_req_s: 0.2}\n"
    )
    proc = run_cli("simulate", "--workload", str(path), "--max-loras", "2", "--duration", "60", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [a["adapter_id"] for a in doc["adapters"]] == ["support", "legal"]


def test_simulate_from_trace(tmp_path):
    (tmp_path / "adapters.csv").write_text("adapter_id,rank\na,8\nb,16\n")
    (tmp_path / "trace.csv").write_text(
        "arrival_time_s,adapter_id,input_tokens,output_tokens\n0.0,a,100,20\n0.5,b,50,10\n1.0,a,30,5\n"
    )
    proc = run_cli("simulate", "--trace", str(tmp_path), "--max-loras", "1", "--duration", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)["summary"]
    assert s["arrived"] == 3 and s["completed"] == 3
    assert s["input_tok_s"] == pytest.approx(180 / 30)
    assert s["output_tok_s"] == pytest.approx(35 / 30)


def test_profiles_lists_builtins():
    proc = run_cli("profiles", "--json")
    assert proc.returncode == 0, proc.stderr
    names = {p["name"] for p in json.loads(proc.stdout)}
    assert names == {"llama-3.1-8b-instruct", "qwen-2.5-7b-instruct",
                     "llama-3.1-8b-instruct-reference", "qwen-2.5-7b-instruct-reference"}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--served", "4", "--rates", "1,abc", "--ranks", "8", "--max-loras", "2"], "--rates: 'abc' is not a number"),
        (["--served", "4", "--rates", "-1", "--ranks", "8", "--max-loras", "2"], "--rates"),
        (["--served", "4", "--rates", "1", "--ranks", "8", "--max-loras", "4", "--max-cpu-loras", "2"],
         "--max-cpu-loras (2) must be >= --max-loras (4)"),
        (["--served", "4", "--rates", "1", "--ranks", "8,32", "--max-loras", "2", "--max-lora-rank", "16"],
         "above --max-lora-rank 16"),
        (["--served", "300", "--rates", "1", "--ranks", "32", "--max-loras", "256"], "does not start"),
        (["--max-loras", "2"], "give exactly one workload"),
        (["--served", "4", "--rates", "1", "--ranks", "8", "--max-loras", "2", "--profile", "nope"], "unknown profile"),
    ],
)
def test_bad_input_is_one_clear_error_without_traceback(args, needle):
    proc = run_cli("simulate", *args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_trace_names_file_and_line(tmp_path):
    (tmp_path / "adapters.csv").write_text("adapter_id,rank\na,8\n")
    (tmp_path / "trace.csv").write_text(
        "arrival_time_s,adapter_id,input_tokens,output_tokens\n0.0,a,100,20\n0.5,zzz,50,10\n"
    )
    proc = run_cli("simulate", "--trace", str(tmp_path), "--max-loras", "1")
    assert proc.returncode == 2
    assert "trace.csv" in proc.stderr and "line 3" in proc.stderr and "zzz" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_workload_describe(tmp_path):
    path = tmp_path / "wl.yaml"
    path.write_text("layout: {kind: zipf, served: 20, total_rate_req_s: 10, exponent: 1.0, ranks: [8, 16]}\n")
    proc = run_cli("workload", "describe", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["adapters"] == 20
    assert summary["aggregate_rate_req_s"] == pytest.approx(10.0)
    assert summary["offered_tok_s"] == pytest.approx(
        10.0 * (summary["lengths"]["mean_prompt_tokens"] + summary["lengths"]["mean_output_tokens"])
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("adapters: [{id: a, rank: 8, rate_req_s: -1}]\n")
    proc = run_cli("workload", "describe", str(bad))
    assert proc.returncode == 2 and "rate_req_s" in proc.stderr
