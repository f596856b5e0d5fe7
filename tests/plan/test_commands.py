"""End-to-end: recommend, explain and quickstart as a user runs them, with the core dependencies only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from command_scripts import cli_script

# The CLI, in a process where the learn extra cannot be imported.
CLI = cli_script(prelude="""\
import sys
for name in ("sklearn", "imodels", "interpret"):
    sys.modules[name] = None
""")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], check=False, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_quickstart_walks_through_a_recommendation_and_a_placement():
    proc = run("quickstart")
    assert proc.returncode == 0, proc.stderr
    for needle in ("1. The example", "Recommendation", "--max-loras", "Why", "vllm serve",
                   "3. All 240 adapters", "4. Next", "loratwin place",
                   "served by a fresh server (each adapter's first request stalls it), /metrics scraped every 2 s"):
        assert needle in proc.stdout, needle
    # one line per GPU, each with its flags and the twin's verdict
    gpu_lines = [line for line in proc.stdout.splitlines() if line.strip().startswith("GPU ")]
    assert len(gpu_lines) >= 2
    assert all("--max-loras" in line and "the twin:" in line for line in gpu_lines)


def test_quickstart_json_holds_the_placement_of_every_adapter():
    proc = run("quickstart", "--no-check", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    placed = [a for g in doc["placement"]["gpus"] for a in g["adapters"]]
    assert len(placed) == len(set(placed)) == 240
    assert doc["served"] < 240 and "verification" not in doc["placement"]
    assert doc["serving"] == {"warm": False, "metrics_poll_s": 2.0}


def test_recommend_json_is_one_document(tmp_path):
    csv = tmp_path / "adapters.csv"
    csv.write_text("adapter_id,rank,rate\n" + "".join(f"a{i},{8 if i % 2 else 16},0.05\n" for i in range(48)))
    proc = run("recommend", str(csv), "--profile", "qwen-2.5-7b-instruct", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["profile"] == "qwen-2.5-7b-instruct" and doc["adapters_given"] == 48
    assert 1 <= doc["max_loras"] <= doc["served"] <= 48
    assert doc["vllm_command"][:2] == ["vllm", "serve"]


def test_recommend_text_and_full_command_file(tmp_path):
    yaml_file = tmp_path / "w.yaml"
    yaml_file.write_text("layout: {served: 30, rates: [0.4, 0.1], ranks: [8, 16]}\n")
    command = tmp_path / "serve.sh"
    proc = run("recommend", str(yaml_file), "--command-out", str(command))
    assert proc.returncode == 0, proc.stderr
    assert "Recommendation for 30 adapters" in proc.stdout
    assert command.read_text().startswith("#!/bin/sh\nvllm serve")


def test_explain_prints_rules_of_a_chosen_model():
    proc = run("explain", "--profile", "llama-3.1-8b-instruct", "--model", "tree", "--target", "starved")
    assert proc.returncode == 0, proc.stderr
    assert "tree model of starved" in proc.stdout and "if " in proc.stdout
    proc = run("explain", "--model", "rulefit", "--target", "best_served", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["best_served"]["kind"] == "rules"


def test_mistakes_exit_2_with_one_message(tmp_path):
    proc = run("recommend", str(tmp_path / "missing.csv"))
    assert proc.returncode == 2 and "missing.csv does not exist" in proc.stderr
    proc = run("explain", "--target", "nonsense")
    assert proc.returncode == 2 and "--target" in proc.stderr
    csv = tmp_path / "x.csv"
    csv.write_text("adapter_id,rank,rate\na,8,0.1\n")
    proc = run("recommend", str(csv), "--check", "oracle")
    assert proc.returncode == 2 and "--check" in proc.stderr
    proc = run("recommend", str(csv), "--max-wait", "-1")
    assert proc.returncode == 2 and "--max-wait" in proc.stderr
