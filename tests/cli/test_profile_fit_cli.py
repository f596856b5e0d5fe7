"""End-to-end: `loratwin profile fit` on a small runs table, as a user runs it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from loratwin.profiles import load_profile
from loratwin.validate import replay_runs
from loratwin.validate.runs import RealRun

from .inprocess import run_main

WINDOW_S = 300
# (run id, served, max_loras, max_lora_rank, rank cycle, rate levels)
CONFIGS = [("a", 4, 2, 16, (8, 16), (0.2, 0.4)), ("b", 8, 4, 16, (8, 16), (0.4, 0.8)),
           ("c", 6, 6, 32, (8, 32), (0.1, 0.3))]


def _runs_table(path: Path) -> None:
    """Three short runs 'measured' on the twin with the built-in llama profile, as `profile import` writes them."""
    runs = [RealRun(run_id=i, source_set="lab", model="llama-3.1-8b-instruct", status="ok", max_loras=m,
                    served_adapters=s, max_lora_rank=k, rank_cycle=cycle, rate_values=rates,
                    rate_counts=(s // 2, s - s // 2)) for i, s, m, k, cycle, rates in CONFIGS]
    measured = replay_runs(runs, load_profile, seeds=(0,), workers=1, duration_s=WINDOW_S)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run_id", "source_set", "model", "max_loras", "served_adapters", "max_lora_rank",
                         "adapter_rank_cycle", "rate_values", "rate_counts", "status", "configured_time_s",
                         "total_tok_s", "mean_itl_ms", "throughput_over_offered", "kv_cache_tokens"])
        for run, r in zip(runs, measured, strict=True):
            writer.writerow([run.run_id, "lab", run.model, run.max_loras, run.served_adapters, run.max_lora_rank,
                             " ".join(map(str, run.rank_cycle)), " ".join(map(str, run.rate_values)),
                             " ".join(map(str, run.rate_counts)), "ok", WINDOW_S, r.total_tok_s, r.mean_itl_ms,
                             r.throughput_over_offered, 250_000 if run.run_id == "a" else ""])


@pytest.mark.slow
def test_profile_fit_writes_a_profile_that_says_what_it_was_fitted_on(tmp_path):
    _runs_table(tmp_path / "runs.csv")
    out = tmp_path / "my-llama.yaml"
    code, stdout, stderr = run_main([
        "profile", "fit", str(tmp_path / "runs.csv"), "--model", "meta-llama/Llama-3.1-8B-Instruct",
        "--gpu", "h100-64gb", "--start", "llama-3.1-8b-instruct", "--out", str(out), "--rounds", "2",
        "--workers", "1", "--json"])
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["fitted_runs"] == 3 and summary["kv_points_from_runs"] == 1 and len(summary["rounds"]) == 3
    assert summary["started_from"] == "profile llama-3.1-8b-instruct"
    assert "round 0: throughput err" in stderr and f"wrote {out}" in stderr
    text = out.read_text()
    assert text.startswith("# Written by: loratwin profile fit ")
    assert "# Started from: profile llama-3.1-8b-instruct\n" in text
    assert f"# Fitted on 3 runs of {tmp_path / 'runs.csv'} (1 KV capacities logged by them): throughput err" in text
    profile = load_profile(out)
    assert profile.name == "my-llama" and profile.fitted == "calibrated"
    assert profile.kv.capacity_tokens[16][2] == 250_000  # the capacity run a logged
    assert profile.step_time.model_dump() == summary["step_time"]
    assert "max_num_seqs 2048" in profile.engine


def test_profile_fit_without_json_prints_the_errors_and_the_next_step(tmp_path):
    _runs_table(tmp_path / "runs.csv")
    out = tmp_path / "p.yaml"
    code, stdout, stderr = run_main([
        "profile", "fit", str(tmp_path / "runs.csv"), "--model", "llama-3.1-8b-instruct", "--gpu", "h100-64gb",
        "--start", "llama-3.1-8b-instruct", "--out", str(out), "--rounds", "1", "--workers", "1"])
    assert code == 0, stderr
    assert "profile p: fitted on 3 runs (1 KV capacities from their logs)" in stdout
    assert f"next: loratwin train --profile {out} --out MODELS" in stdout


@pytest.mark.slow
def test_profile_fit_starts_from_the_derived_profile(tmp_path):
    _runs_table(tmp_path / "runs.csv")
    out = tmp_path / "derived-fit.yaml"
    code, stdout, stderr = run_main([
        "profile", "fit", str(tmp_path / "runs.csv"), "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "h200",
        "--out", str(out), "--rounds", "1", "--workers", "1", "--json"])
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["started_from"] == "the derived profile of meta-llama/Llama-3.1-8B-Instruct on h200"
    profile = load_profile(out)
    assert profile.fitted == "calibrated" and profile.kv.memory is not None  # the memory model carried over
    assert profile.kv.capacity_tokens[16][2] == 250_000
    assert "# Started from: the derived profile of meta-llama/Llama-3.1-8B-Instruct on h200" in out.read_text()
