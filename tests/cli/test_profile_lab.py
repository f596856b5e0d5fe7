"""End to end: `loratwin profile plan`, `make-adapters`, `import`, and `simulate --bench-json` read back."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .inprocess import run_main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lab"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def test_plan_prints_the_commands_and_the_total():
    code, out, err = run_main(["profile", "plan", "--model", LLAMA, "--gpu", "h100-64gb"])
    assert code == 0, err
    assert out.count("\nvllm serve meta-llama/Llama-3.1-8B-Instruct ") == 19
    assert "python3 benchmarks/benchmark_serving.py --backend vllm" in out
    assert "loratwin profile make-adapters --model meta-llama/Llama-3.1-8B-Instruct --rank 32 --count 8" in out
    assert "# Total: 19 runs, about 2.2 GPU-hours" in out
    assert "loratwin profile import ./runs/* --out runs.csv --kv-out kv_capacity.csv" in out
    if shutil.which("bash"):  # the whole output is a shell script (comments and commands)
        assert subprocess.run(["bash", "-n"], input=out, text=True, capture_output=True).returncode == 0


def test_plan_json_holds_each_run_as_a_runs_row_with_its_commands():
    code, out, err = run_main(["profile", "plan", "--model", LLAMA, "--gpu", "l4", "--max-model-len", "8192",
                               "--adapter-dir", "/data/ad", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["gpu"] == "l4" and doc["total_gpu_s"] == pytest.approx(sum(r["estimated_gpu_s"] for r in doc["runs"]))
    run = doc["runs"][0]
    assert {"run_id", "served_adapters", "max_loras", "max_lora_rank", "adapter_rank_cycle", "rate_values",
            "rate_counts", "serve_command", "client_commands", "script"} <= set(run)
    assert "--max-model-len" in run["serve_command"] and "8192" in run["serve_command"]
    assert run["serve_command"][-1].startswith("lora-7=/data/ad/rank-16/adapter-")


def test_make_adapters_writes_a_folder_each(tmp_path):
    out = tmp_path / "rank-4"
    code, stdout, err = run_main(["profile", "make-adapters", "--model", "meta-llama/Llama-3.2-1B-Instruct", "--rank",
                                  "4", "--count", "2", "--out", str(out), "--json"])
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["adapters"] == ["adapter-000", "adapter-001"] and sorted(p.name for p in out.iterdir()) == doc["adapters"]
    assert doc["bytes"] == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    # a second run replaces its own output, deterministically
    before = (out / "adapter-001" / "adapter_model.safetensors").read_bytes()
    code, _, err = run_main(["profile", "make-adapters", "--model", "meta-llama/Llama-3.2-1B-Instruct", "--rank", "4",
                             "--count", "2", "--out", str(out)])
    assert code == 0 and "wrote 2 adapters of rank 4" in err
    assert (out / "adapter-001" / "adapter_model.safetensors").read_bytes() == before


def test_import_writes_the_runs_table_and_kv_capacities(tmp_path):
    code, out, err = run_main(["profile", "import", str(FIXTURES / "run-ok"), str(FIXTURES / "run-oom"),
                               "--out", str(tmp_path / "runs.csv"), "--kv-out", str(tmp_path / "kv.csv")])
    assert code == 0, err
    assert "07-in-use-12" in out and "oom_at_start" in out and "296000" in out
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "oom_at_start"]
    assert len(list(csv.DictReader((tmp_path / "kv.csv").open()))) == 2


def test_a_simulated_run_reads_back_as_a_runs_row(tmp_path):
    run = tmp_path / "twin-run"
    run.mkdir()
    shutil.copy(FIXTURES / "run-ok" / "server.log", run / "server.log")  # 12 adapters, max_loras 4, max_lora_rank 16
    code, out, err = run_main(["simulate", "--served", "12", "--rates", "0.4,0.2,0.1", "--ranks", "8,16",
                               "--max-loras", "4", "--duration", "120", "--json", "--bench-json", str(run / "bench.json")])
    assert code == 0, err
    summary = json.loads(out)["summary"]
    bench = json.loads((run / "bench.json").read_text())
    assert bench["completed"] == summary["completed"] and bench["num_prompts"] == summary["arrived"]
    assert bench["mean_ttft_ms"] == pytest.approx(summary["mean_ttft_ms"])
    assert bench["p99_itl_ms"] == summary["p99_itl_ms"] and len(bench["ttfts"]) == summary["arrived"]
    code, out, err = run_main(["profile", "import", str(run), "--out", str(tmp_path / "runs.csv"), "--json"])
    assert code == 0, err
    (row,) = json.loads(out)["runs"]
    assert row["total_tok_s"] == pytest.approx(summary["total_tok_s"])
    assert row["mean_ttft_ms"] == pytest.approx(summary["mean_ttft_ms"])
    assert row["mean_itl_ms"] == pytest.approx(summary["mean_itl_ms"])
    assert (row["rate_values"], row["rate_counts"], row["adapter_rank_cycle"]) == ("0.1 0.2 0.4", "4 4 4", "8 16")
    assert (row["max_loras"], row["served_adapters"], row["kv_cache_tokens"]) == (4, 12, 296_000)
