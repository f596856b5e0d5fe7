"""`train --profile`: a profile swept into OUT/sweep and trained, on a tiny grid (needs the learn extra)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from cli.inprocess import run_main  # tests/ is on sys.path (pytest rootdir-relative imports)

from loratwin.learn import from_profile
from loratwin.sweep import execute
from loratwin.sweep.grid import grid_from_yaml
from loratwin.sweep.store import read_results

from .test_train import TINY_GRID  # the same tiny sweep as `train`'s own tests


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """The training sweep cut down to a tiny grid, and a profile YAML of the user's."""
    monkeypatch.setattr(from_profile, "profile_grid",
                        lambda profile: grid_from_yaml(TINY_GRID, "tiny.yaml").model_copy(update={"profile": profile}))
    monkeypatch.setattr(from_profile, "sweep_plan",
                        lambda: [("search", slice(0, 6, 1), True), ("full grid", slice(0, 6, 3), False)])
    from importlib import resources

    profile = tmp_path / "my-llama.yaml"
    profile.write_text(resources.files("loratwin.profiles.data").joinpath("llama-3.1-8b-instruct.yaml").read_text()
                       .replace("name: llama-3.1-8b-instruct\n", "name: my-llama\n"))
    return profile


TRAIN = ("--families", "tree", "--folds", "3", "--workers", "1", "--json")


@pytest.mark.slow
def test_train_profile_sweeps_then_trains_and_keeps_the_sweep(tiny, tmp_path):
    out = tmp_path / "models"
    code, stdout, stderr = run_main(["train", "--profile", str(tiny), "--out", str(out), *TRAIN])
    assert code == 0, stderr
    assert f"sweeping {tiny}: search into {out / 'sweep'}" in stderr
    manifest = json.loads(stdout)
    assert manifest["profile"] == "my-llama" and manifest["training"]["profile_given"] == str(tiny)
    assert [s["what"] for s in manifest["training"]["sweeps"]] == ["search", "full grid"]
    assert {r["family"] for r in manifest["comparison"]["config"]} == {"tree"}
    assert "max_starved_p" in manifest["recommend"]
    stored = read_results(out / "sweep").num_rows
    assert stored == manifest["training"]["runs"] > 0
    assert {"manifest.json", "comparison.md", "starved.tree.json", "sweep"} <= {p.name for p in out.iterdir()}

    # a rerun resumes the sweep (nothing new to run) and rewrites the models beside it
    code, _, stderr = run_main(["train", "--profile", str(tiny), "--out", str(out), *TRAIN])
    assert code == 0, stderr
    assert read_results(out / "sweep").num_rows == stored

    # recommend names the models it used
    adapters = tmp_path / "adapters.csv"
    adapters.write_text("adapter_id,rank,rate\n" + "".join(f"a{i},8,0.1\n" for i in range(12)))
    code, stdout, stderr = run_main(["recommend", str(adapters), "--profile", str(tiny), "--models", str(out),
                                     "--check", "learned", "--json"])
    assert code == 0, stderr
    used = json.loads(stdout)["models_used"]
    assert [m["use"] for m in used] == ["the learned check (throughput, starvation)",
                                        "the published method (optimum models)"]
    assert all(m["directory"] == str(out) and m["profile"] == "my-llama" and not m["shipped"] for m in used)
    assert used[0]["families"] == {"total_tok_s": "tree", "starved": "tree"}
    code, stdout, _ = run_main(["recommend", str(adapters), "--profile", str(tiny), "--models", str(out),
                                "--check", "learned"])
    assert f"the learned check (throughput, starvation): {out} (trained by loratwin train, for profile my-llama; " \
           "total_tok_s: tree, starved: tree)" in stdout


def test_an_interrupted_sweep_keeps_its_runs_and_writes_no_models(tiny, tmp_path, monkeypatch):
    real = execute.run_sweep

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)  # the first sweep finishes and is stored, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(from_profile, "run_sweep", interrupted)
    out = tmp_path / "models"
    code, stdout, stderr = run_main(["train", "--profile", str(tiny), "--out", str(out), *TRAIN])
    assert code == 130 and stdout == ""
    assert f"interrupted: finished runs are stored in {out / 'sweep'}; run the same command again to resume" in stderr
    assert read_results(out / "sweep").num_rows > 0
    assert sorted(p.name for p in out.iterdir()) == ["sweep"]


def test_a_profile_without_models_is_told_how_to_train_them(tiny, tmp_path):
    adapters = tmp_path / "adapters.csv"
    adapters.write_text("adapter_id,rank,rate\na,8,0.1\n")
    code, stdout, stderr = run_main(["recommend", str(adapters), "--profile", str(tiny), "--json"])
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["models_used"] == [] and doc["published_method"] is None
    assert (f"no trained models for profile my-llama, so no published-method answer and no --check learned; train "
            f"them with `loratwin train --profile {tiny} --out MODELS`") in doc["notes"][0]
    code, _, stderr = run_main(["recommend", str(adapters), "--profile", str(tiny), "--check", "learned"])
    assert code == 2 and "train them with `loratwin train --profile PROFILE --out MODELS`" in stderr
