"""`loratwin simulate-cluster` end to end on a small placement, and `place --verify --router`."""

from __future__ import annotations

import json

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
