"""Adapters of any rank on the built-in profile: the server's --max-lora-rank is the least value vLLM
accepts (rank 4 -> 8, 12 -> 16, 64 -> 64), and a value vLLM refuses is one clear error."""

from __future__ import annotations

import json

import pytest

from .inprocess import run_main

SIM = ["simulate", "--served", "32", "--rates", "0.5", "--max-loras", "8", "--duration", "30", "--json"]


@pytest.mark.parametrize(("ranks", "server_rank"), [("4,12", 16), ("4", 8), ("64", 64)])
def test_simulate_serves_any_rank_at_the_least_accepted_max_lora_rank(ranks, server_rank):
    code, out, err = run_main([*SIM, "--ranks", ranks])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["config"]["server"]["max_lora_rank"] == server_rank
    assert doc["summary"]["completed"] > 0


def test_a_max_lora_rank_vllm_refuses_is_one_error():
    code, out, err = run_main([*SIM, "--ranks", "4,12", "--max-lora-rank", "12"])
    assert code == 2 and out == ""
    assert err.strip() == "error: --max-lora-rank 12: vLLM accepts only 8, 16, 32, 64, 128, 256, 320, 512"


def _adapters(tmp_path, rates=(0.02, 0.1, 0.3)):
    path = tmp_path / "adapters.csv"
    rows = [f"a{i:02d},{(4, 12, 64)[i % 3]},{rates[i % len(rates)]}" for i in range(24)]
    path.write_text("adapter_id,rank,rate\n" + "\n".join(rows) + "\n")
    return path


def test_recommend_takes_ranks_4_12_and_64(tmp_path):
    code, out, err = run_main(["recommend", str(_adapters(tmp_path)), "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["served"] == doc["adapters_given"] == 24 and doc["max_lora_rank"] == 64


def test_place_takes_ranks_4_12_and_64_without_splitting_traffic(tmp_path):
    code, out, err = run_main(["place", str(_adapters(tmp_path)), "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert all(len(gpus) == 1 for gpus in doc["routing"].values())  # no adapter split into replicas
    gpus = doc["gpus"]
    assert sorted(a for g in gpus for a in g["adapters"]) == [f"a{i:02d}" for i in range(24)]
    assert {g["max_lora_rank"] for g in gpus} <= {8, 16, 64}
