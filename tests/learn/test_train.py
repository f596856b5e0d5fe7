"""`train` end to end on a tiny sweep: models written as JSON, usable by recommend (needs the learn extra)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from typer.testing import CliRunner

from loratwin.cli import app
from loratwin.learn.bundle import load_model_set
from loratwin.learn.train import train_profile
from loratwin.plan import make_check, recommend
from loratwin.profiles import load_profile
from loratwin.sweep.execute import run_sweep
from loratwin.sweep.grid import grid_from_yaml
from loratwin.workload import reference_layout

TINY_GRID = """\
name: tiny
duration_s: 120
served: [8, 16, 24]
max_loras: [8, 16]
rates: [[3.2, 1.6, 0.8], [1.6, 0.8, 0.4], [0.8, 0.4, 0.2], [0.4, 0.2, 0.1], [0.2, 0.1, 0.05], [6.4, 3.2, 1.6]]
ranks: [[8, 16]]
"""


def test_train_writes_models_that_recommend_can_use(tmp_path):
    grid = grid_from_yaml(TINY_GRID, "tiny.yaml")
    run_sweep(grid, tmp_path / "sweep", workers=1)
    out = tmp_path / "models"
    manifest = train_profile(tmp_path / "sweep", out, families=["tree", "linear"], n_folds=3)
    assert manifest["training"]["runs"] == 30 and manifest["training"]["workloads"] == 6
    assert set(manifest["defaults"]) == {"best_served", "best_max_loras", "best_total_tok_s", "total_tok_s", "starved"}
    files = {p.name for p in out.iterdir()}
    assert {"manifest.json", "comparison.md", "starved.tree.json", "total_tok_s.linear.json"} <= files
    assert "| starved | tree |" in (out / "comparison.md").read_text()
    document = json.loads((out / "total_tok_s.tree.json").read_text())
    assert document["output"]["multiply_by"] == "offered_tok_s" and document["cv"]["error_pct"] >= 0

    assert load_model_set(out).profile == "llama-3.1-8b-instruct"
    profile = load_profile("llama-3.1-8b-instruct")
    check = make_check("learned", profile, models_dir=out)
    assert check.name == "learned" and check.models.source == str(out)
    rec = recommend(reference_layout(24, [0.2, 0.1, 0.05], [8, 16], 0), profile, check=check, models=out)
    assert 1 <= rec.max_loras <= rec.served <= 24 and rec.check == "learned"
    assert rec.published_method["models"] == str(out)
    csv = tmp_path / "adapters.csv"
    csv.write_text("adapter_id,rank,rate\n" + "".join(f"a{i},8,0.1\n" for i in range(12)))
    result = CliRunner().invoke(app, ["recommend", str(csv), "--check", "learned", "--models", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["check"] == "learned"

    # the same through the command, with the margin tuned on the sweep
    result = CliRunner().invoke(app, ["train", str(tmp_path / "sweep"), "--out", str(tmp_path / "cli-models"),
                                      "--families", "tree", "--folds", "3", "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout[result.stdout.index("{"):])
    assert manifest["defaults"]["starved"] == "tree"
    assert manifest["recommend"]["max_starved_p"] in (0.5, 0.4, 0.3, 0.2, 0.1, 0.05)
