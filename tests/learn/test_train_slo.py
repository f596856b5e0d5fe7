"""`train --slo`: the optimum models learn the best point under latency SLOs, and say so (needs the learn extra)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from cli.inprocess import run_main  # tests/ is on sys.path (pytest rootdir-relative imports)

from loratwin.errors import InputError
from loratwin.learn.dataset import load_sweep
from loratwin.learn.train import train_profile
from loratwin.slo import parse_slos
from loratwin.sweep.store import SCHEMA, ResultStore

RATES = [[3.2, 1.6, 0.8], [1.6, 0.8, 0.4], [0.8, 0.4, 0.2], [0.4, 0.2, 0.1], [0.2, 0.1, 0.05], [6.4, 3.2, 1.6]]


def _run(workload: int, max_loras: int, served: int) -> dict:
    """A hand-made run: never starved; p99 TTFT 100 ms per served adapter, p99 TPOT 30 ms; throughput
    grows with served, so without SLOs the best point serves the most."""
    record = {name: None for name in SCHEMA.names}
    record.update(
        config_key=f"{workload}-{max_loras}-{served}", workload_key=f"w{workload}", workload_index=workload,
        profile="llama-3.1-8b-instruct", layout="levels", rate_levels=RATES[workload], rank_levels=[8, 16],
        arrival='{"kind":"poisson","schedule":null}', seed=0, duration_s=3600.0, served=served, max_loras=max_loras,
        max_lora_rank=16, status="ok", throughput_over_offered=0.99, total_tok_s=100.0 * served * RATES[workload][0],
        p99_ttft_all_sent_ms=100.0 * served, p99_itl_ms=40.0, p99_tpot_ms=30.0,
    )
    return record


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "sweep"
    with ResultStore(root, {"name": "hand-made"}) as writer:
        for w in range(len(RATES)):
            for max_loras in (8, 16):
                for served in (16, 32, 64):
                    writer.add(_run(w, max_loras, served))
    return root


def test_labels_under_slos_feed_the_optimum_table(store):
    _, _, labels = load_sweep(store)
    assert {r["best_served"] for r in labels} == {64} and {r["slos"] for r in labels} == {None}
    _, _, labels = load_sweep(store, slos=parse_slos(["ttft_p99:3500"]))
    assert {r["best_served"] for r in labels} == {32} and {r["slos"] for r in labels} == {"ttft_p99:3500"}


def test_manifest_and_optimum_models_record_the_slos(store, tmp_path):
    manifest = train_profile(store, tmp_path / "m", families=["tree"], n_folds=3, slos=parse_slos(["ttft_p99:3500"]))
    assert manifest["slos"] == ["ttft_p99:3500"]
    best = json.loads((tmp_path / "m" / "best_served.tree.json").read_text())
    assert best["slos"] == ["ttft_p99:3500"]
    assert "slos" not in json.loads((tmp_path / "m" / "starved.tree.json").read_text())  # SLOs do not change it
    assert "under the SLOs ttft_p99:3500" in (tmp_path / "m" / "comparison.md").read_text()
    assert train_profile(store, tmp_path / "m2", families=["tree"], n_folds=3)["slos"] == []


def test_train_slo_on_the_command_line(store, tmp_path):
    out = tmp_path / "cli"
    code, stdout, stderr = run_main(["train", str(store), "--out", str(out), "--families", "tree", "--folds", "3",
                                     "--no-tune", "--slo", "ttft_p99:3500", "--slo", "tpot_p99:40", "--json"])
    assert code == 0, stderr
    assert json.loads(stdout)["slos"] == ["ttft_p99:3500", "tpot_p99:40"]


def test_a_store_without_the_metric_is_refused(tmp_path):
    root = tmp_path / "old"
    with ResultStore(root, {"name": "hand-made"}) as writer:
        for w in range(len(RATES)):
            writer.add(_run(w, 8, 16) | {"p99_tpot_ms": None})
    with pytest.raises(InputError, match=f"--slo tpot_p99:40: the runs in {root} hold no p99_tpot_ms"):
        train_profile(root, tmp_path / "m", families=["tree"], n_folds=3, slos=parse_slos(["tpot_p99:40"]))


def test_the_published_answer_says_when_its_models_had_other_slos(store, tmp_path):
    from loratwin.plan.recommend.published import published_answer
    from loratwin.profiles import load_profile
    from loratwin.workload import reference_layout

    train_profile(store, tmp_path / "m", families=["tree"], n_folds=3, slos=parse_slos(["ttft_p99:3500"]))
    profile, workload = load_profile("llama-3.1-8b-instruct"), reference_layout(48, RATES[2], [8, 16], 0)
    same = published_answer(workload, profile, tmp_path / "m", slos=parse_slos(["ttft_p99:3.5e3"]))
    assert same["models_slos"] == ["ttft_p99:3500"] and same["slo_note"] is None
    other = published_answer(workload, profile, tmp_path / "m", slos=parse_slos(["ttft_p99:2000"]))["slo_note"]
    assert "trained under the SLOs ttft_p99:3500, not the SLOs ttft_p99:2000 as asked" in other
    assert "--slo ttft_p99:2000" in other
    assert "not no SLO as asked" in published_answer(workload, profile, tmp_path / "m")["slo_note"]
    shipped = published_answer(workload, profile, slos=parse_slos(["ttft_p99:2000"]))
    assert shipped["models_slos"] == [] and "the starvation rule alone (no SLO)" in shipped["slo_note"]


def test_recommend_notes_models_trained_under_other_slos(store, tmp_path):
    from loratwin.plan import AcceptanceRule, recommend
    from loratwin.workload import reference_layout

    train_profile(store, tmp_path / "m", families=["tree"], n_folds=3, slos=parse_slos(["ttft_p99:3500"]))
    workload = reference_layout(12, RATES[4], [8, 16], 0)
    rule = AcceptanceRule(slos=parse_slos(["ttft_p99:60000"]), window_s=120)
    rec = recommend(workload, "llama-3.1-8b-instruct", rule=rule, models=tmp_path / "m")
    assert rec.published_method["models_slos"] == ["ttft_p99:3500"]
    assert any("trained under the SLOs ttft_p99:3500, not the SLOs ttft_p99:60000" in n for n in rec.notes)
    same = recommend(workload, "llama-3.1-8b-instruct", rule=rule.with_(slos=parse_slos(["ttft_p99:3500"])),
                     models=tmp_path / "m")
    assert not any("trained under" in n for n in same.notes)


def test_recommend_names_the_slos_of_the_published_answer(store, tmp_path):
    train_profile(store, tmp_path / "m", families=["tree"], n_folds=3, slos=parse_slos(["ttft_p99:3500"]))
    csv = tmp_path / "adapters.csv"
    csv.write_text("adapter_id,rank,rate\n" + "".join(f"a{i},{8 * (1 + i % 2)},0.1\n" for i in range(12)))
    code, stdout, stderr = run_main(["recommend", str(csv), "--models", str(tmp_path / "m"), "--slo", "ttft_p99:3500",
                                     "--window", "120"])
    assert code == 0, stderr
    published = next(line for line in stdout.splitlines() if line.startswith("Published method"))
    assert "under the SLOs ttft_p99:3500)" in published and "starvation rule alone" not in published
