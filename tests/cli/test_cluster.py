"""`loratwin simulate-cluster` end to end on a small placement, and `place --verify --router`."""

from __future__ import annotations

import json
import re

import pytest

from .inprocess import run_main

ADAPTERS = "adapter_id,rank,rate\na,8,0.5\nb,16,0.3\nc,8,2.0\n"
PLACEMENT = ("profile: llama-3.1-8b-instruct\ngpus:\n- {gpu: 0, adapters: [a, c], max_loras: 2, max_lora_rank: 8}\n"
             "- {gpu: 1, adapters: [b, c], max_loras: 2, max_lora_rank: 16}\nrouting:\n  a: {0: 1.0}\n  b: {1: 1.0}\n"
             "  c: {0: 0.25, 1: 0.75}\n")


@pytest.fixture
def files(tmp_path, monkeypatch):
    (tmp_path / "adapters.csv").write_text(ADAPTERS)
    (tmp_path / "p.yaml").write_text(PLACEMENT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_cli_names_the_twin_routers_and_threshold():
    from loratwin.cli import cluster
    from loratwin.twin import cluster as twin_cluster

    assert cluster.ROUTERS == twin_cluster.ROUTERS
    assert cluster.DEFAULT_SPILL_THRESHOLD == twin_cluster.DEFAULT_SPILL_THRESHOLD


def test_the_help_prints_the_ray_extra_with_its_brackets():
    code, out, _ = run_main(["simulate-cluster", "--help"])
    assert code == 0 and "loratwin[ray]" in out


@pytest.mark.slow
@pytest.mark.parametrize("router", ["weighted-random", "least-outstanding", "affinity"])
def test_simulate_cluster_json_and_out(files, router):
    code, out, err = run_main(["simulate-cluster", "p.yaml", "adapters.csv", "--router", router, "--duration", "60",
                               "--json", "--out", "run", "--workers", "1"])
    assert code == 0, err
    doc = json.loads(out)
    assert [g["gpu"] for g in doc["gpus"]] == ["GPU 0", "GPU 1"]
    assert doc["cluster"]["router"] == router
    assert doc["cluster"]["requests"] == sum(g["requests"] for g in doc["gpus"])
    c = next(a for a in doc["adapters"] if a["adapter_id"] == "c")
    # affinity keeps c on its home (GPU 1, weight 0.75): it never has 256 requests outstanding here
    assert set(c["split"]) == ({"GPU 1"} if router == "affinity" else {"GPU 0", "GPU 1"})
    a = next(a for a in doc["adapters"] if a["adapter_id"] == "a")
    assert a["split"] == {"GPU 0": a["requests"]}
    assert json.loads((files / "run" / "cluster.json").read_text()) == doc
    assert (files / "run" / "gpu-1" / "summary.json").exists()
    # the same inputs, the same result
    again = run_main(["simulate-cluster", "p.yaml", "adapters.csv", "--router", router, "--duration", "60", "--json"])
    assert json.loads(again[1]) == doc


@pytest.mark.slow
def test_simulate_cluster_prints_the_table(files):
    code, out, err = run_main(["simulate-cluster", "p.yaml", "adapters.csv", "--duration", "60", "--workers", "1"])
    assert code == 0, err
    assert "GPU 1" in out and "c: " in out and "served" in out and "cluster (weighted-random, 60 s)" in out


@pytest.mark.slow
def test_place_verify_with_a_router_adds_the_cluster_totals(files):
    code, out, err = run_main(["place", "adapters.csv", "--gpus", "2", "--check", "cost-model", "--verify", "--router",
                               "least-outstanding", "--window", "60", "--json"])
    assert code == 0, err
    verification = json.loads(out)["verification"]
    assert verification["cluster"]["router"] == "least-outstanding"
    assert len(verification["gpus"]) == 2


@pytest.mark.slow
def test_a_replicated_adapter_is_routed_over_its_gpus(files):
    (files / "hot.csv").write_text("adapter_id,rank,rate\nhot,8,100\nb,16,0.3\n")
    code, out, err = run_main(["place", "hot.csv", "--check", "cost-model", "--out", "hot.yaml"])
    assert code == 0, err
    routing = next(iter(yaml_routing(files / "hot.yaml")["hot"].values()))
    assert routing < 1  # the hot adapter has replicas
    code, out, err = run_main(["simulate-cluster", "hot.yaml", "hot.csv", "--router", "least-outstanding",
                               "--duration", "20", "--json"])
    assert code == 0, err
    hot = next(a for a in json.loads(out)["adapters"] if a["adapter_id"] == "hot")
    assert len(hot["split"]) > 1 and sum(hot["split"].values()) == hot["requests"]
    code, out, err = run_main(["place", "hot.csv", "--check", "cost-model", "--verify", "--router", "affinity",
                               "--window", "20", "--json"])
    assert code == 0, err
    cluster = json.loads(out)["verification"]["cluster"]
    assert cluster["router"] == "affinity" and 0.5 < cluster["served_share"] <= 1.0


def yaml_routing(path):
    import yaml

    return yaml.safe_load(path.read_text())["routing"]


def test_a_light_load_is_printed_in_tenths_of_a_token_per_second():
    from rich.console import Console

    from loratwin.cli.cluster import _print

    gpu = {"gpu": "GPU 0", "adapters": 1, "requests": 3, "offered_tok_s": 0.06, "total_tok_s": 0.06,
           "throughput_over_offered": 1.0, "mean_ttft_ms": 14.0, "p99_ttft_ms": 15.0, "mean_itl_ms": 13.0,
           "p99_itl_ms": 13.0, "starved": False}
    cluster = {"router": "weighted-random", "duration_s": 600.0, "total_tok_s": 0.06, "offered_tok_s": 0.06,
               "served_share": 1.0, "completed": 3, "requests": 3, "starved_gpus": []}
    console = Console(record=True, width=200)
    _print({"cluster": cluster, "gpus": [gpu], "adapters": []}, console)
    text = console.export_text()
    assert "0.1 of 0.1 tok/s offered" in text
    assert re.search(r"│ +0\.1 │ +0\.1 │", text), text


@pytest.mark.slow
def test_place_verify_says_one_adapter_starves_in_the_singular(tmp_path, monkeypatch):
    (tmp_path / "tr").mkdir()
    (tmp_path / "tr" / "trace.csv").write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n"
                                               "0.5,a,10,20\n1.0,b,30,40\n2,c,5,5\n")
    (tmp_path / "tr" / "adapters.csv").write_text("adapter_id,rank\na,8\nb,16\nc,8\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["place", "tr", "--verify", "--router", "least-outstanding", "--window", "60"])
    assert code == 0, err
    assert "(1 adapter starves by the per-adapter rule)" in out
