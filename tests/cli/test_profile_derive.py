"""`loratwin profile derive` end to end: the built-in lists, a derived profile written whole and read by the
commands that take --profile."""

from __future__ import annotations

import json

import pytest

from loratwin.profiles import load_profile

from .inprocess import run_main

SIM = ["simulate", "--served", "8", "--rates", "0.4,0.2", "--ranks", "8,16", "--max-loras", "4", "--duration", "60"]


def test_list_shows_the_builtin_models_and_gpus():
    code, out, err = run_main(["profile", "derive", "--list"])
    assert code == 0, err
    for name in ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "h100-64gb", "h200", "a100-80gb"):
        assert name in out
    code, out, err = run_main(["profile", "derive", "--list", "--json"])
    doc = json.loads(out)
    assert {m["name"] for m in doc["models"]} >= {"meta-llama/Llama-3.1-8B-Instruct"}
    assert {g["name"] for g in doc["gpus"]} >= {"h100-64gb", "h200"}


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    """Llama 3.1 8B derived for an H200 (the memory model sizes its KV cache)."""
    path = tmp_path_factory.mktemp("derive") / "llama-h200.yaml"
    code, out, err = run_main(["profile", "derive", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "h200",
                               "--max-num-seqs", "512", "--out", str(path)])
    assert code == 0, err
    assert out == "" and err.count("\n") == 1 and "DERIVED" in err and "not validated on this GPU" in err
    return path


def test_derive_writes_a_profile_that_says_it_is_derived(derived):
    text = derived.read_text()
    assert text.startswith("# DERIVED profile") and "NOT validated on this GPU" in text
    assert "# Written by: loratwin profile derive --model meta-llama/Llama-3.1-8B-Instruct --gpu h200" in text
    profile = load_profile(derived)
    assert profile.fitted == "derived" and profile.tokenizer == "llama-3.1-8b-instruct"
    assert profile.kv.measured_max_num_seqs == 512
    assert profile.kv.tokens(8, 16) > 0


def test_simulate_runs_on_a_derived_profile(derived):
    code, out, err = run_main([*SIM, "--profile", str(derived), "--json"])
    assert code == 0, err
    summary = json.loads(out)["summary"]
    assert summary["completed"] > 0 and summary["total_tok_s"] > 0


@pytest.mark.slow
def test_recommend_place_and_quickstart_take_a_derived_profile(derived, tmp_path):
    adapters = tmp_path / "adapters.csv"
    adapters.write_text("adapter_id,rank,rate\n" + "".join(f"a{i},{8 if i % 2 else 16},0.2\n" for i in range(20)))
    for args in (["recommend", str(adapters)], ["place", str(adapters)], ["quickstart", "--no-check"]):
        code, out, err = run_main([*args, "--profile", str(derived), "--json"])
        assert code == 0, (args, err)
        assert json.loads(out)


def test_a_derived_profile_is_deterministic(derived, tmp_path):
    again = tmp_path / "again.yaml"
    code, _, err = run_main(["profile", "derive", "--model", "Llama-3.1-8B-Instruct", "--gpu", "H200",
                             "--max-num-seqs", "512", "--out", str(again)])
    assert code == 0, err
    body = [line for line in derived.read_text().splitlines() if not line.startswith("#")]
    assert [line for line in again.read_text().splitlines() if not line.startswith("#")] == body


def test_recommend_on_a_derived_profile_says_it_is_not_validated(derived):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "src" / "loratwin" / "plan" / "examples" / "quickstart.csv"
    code, out, err = run_main(["recommend", str(example), "--profile", str(derived)])
    assert code == 0, err
    assert "DERIVED" in out and "not validated on this GPU" in out
    assert "--max-num-seqs 512" in out  # the profile's own server flags in the vllm serve command
    code, out, err = run_main(["recommend", str(example)])
    assert code == 0, err
    assert "DERIVED" not in out
