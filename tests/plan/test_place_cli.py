"""`loratwin place` end to end: files in, table / JSON / YAML out, errors as one message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from loratwin import InputError
from loratwin.plan.inputs import load_adapters, write_adapters_csv
from loratwin.workload import zipf_layout


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    from loratwin.cli import app

    return app


@pytest.fixture()
def adapters_csv(tmp_path: Path) -> Path:
    return write_adapters_csv(zipf_layout(30, 40.0, 1.0, ranks=(8, 16, 32), seed=0), tmp_path / "adapters.csv")


def invoke(app, *args):
    return CliRunner().invoke(app, ["place", *map(str, args)], catch_exceptions=True)


def test_place_prints_a_table_and_one_serve_command_per_gpu(app, adapters_csv):
    result = invoke(app, adapters_csv, "--verify", "--window", "300", "--workers", "1")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "GPUs for 30 adapters" in out and "lower bound" in out
    assert "--max-loras" in out and "twin tok/s" in out and "twin TTFT s" in out and "twin wait s" in out
    assert "the rule accepts every GPU on the twin's numbers" in out and "tightest limit" in out
    commands = [line for line in out.splitlines() if line.startswith("vllm serve ")]
    assert commands and all("--enable-lora" in c and "--lora-modules" in c for c in commands)


def test_place_json_and_yaml_out(app, adapters_csv, tmp_path):
    out_file = tmp_path / "placement.yaml"
    result = invoke(app, adapters_csv, "--json", "--gpus", "3", "--algorithm", "least-loaded", "--out", out_file)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["gpu_count"] == 3 and doc["algorithm"] == "least-loaded"
    assert sorted(a for g in doc["gpus"] for a in g["adapters"]) == sorted(f"lora-{i}" for i in range(30))
    assert yaml.safe_load(out_file.read_text())["gpus"] == doc["gpus"]


def test_a_bad_out_name_is_refused_before_placing(app, adapters_csv, tmp_path, monkeypatch):
    import loratwin.plan.placement as placement_module

    def never(*args, **kwargs):
        raise AssertionError("placed although --out was bad")

    monkeypatch.setattr(placement_module, "place", never)
    result = invoke(app, adapters_csv, "--out", tmp_path / "placement.txt")
    assert isinstance(result.exception, InputError) and "--out" in str(result.exception)


def test_an_interrupted_verification_keeps_the_placement_written(app, adapters_csv, tmp_path, monkeypatch):
    import loratwin.plan.placement as placement_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(placement_module, "verify_placement", interrupted)
    out_file = tmp_path / "placement.json"
    out_file.write_text("{}")  # a file the user had: replaced whole, never half written
    result = invoke(app, adapters_csv, "--verify", "--out", out_file)
    assert result.exit_code != 0
    doc = json.loads(out_file.read_text())
    assert sorted(a for g in doc["gpus"] for a in g["adapters"]) == sorted(f"lora-{i}" for i in range(30))
    assert "verification" not in doc and sorted(p.name for p in tmp_path.iterdir()) == ["adapters.csv", "placement.json"]


@pytest.mark.slow
def test_compare_gives_every_other_algorithms_fewest_gpus(app, adapters_csv):
    from loratwin.plan import place

    result = invoke(app, adapters_csv, "--compare", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["compare"]) == {"round-robin", "least-loaded", "rank-grouped"}
    workload = load_adapters(adapters_csv)
    for algorithm, count in doc["compare"].items():
        assert count == place(workload, "llama-3.1-8b-instruct", algorithm=algorithm).gpu_count
    text = invoke(app, adapters_csv, "--compare", "--algorithm", "round-robin")
    assert text.exit_code == 0, text.output
    line = next(line for line in text.output.splitlines() if line.startswith("the same adapters under the same check"))
    items = line.split(": ", 1)[1].split("; ")
    assert items[0].startswith(f"greedy {doc['gpu_count']} GPUs")
    assert not any(item.startswith("round-robin") for item in items)  # the placement's own algorithm


def test_place_reads_workload_yaml(app, tmp_path):
    workload = tmp_path / "w.yaml"
    workload.write_text("layout: {kind: zipf, served: 20, total_rate_req_s: 10, ranks: [8, 16]}\n")
    result = invoke(app, workload, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["adapters"] == 20


def test_too_few_gpus_fails_with_the_needed_count(app, adapters_csv):
    result = invoke(app, adapters_csv, "--gpus", "1")
    assert isinstance(result.exception, InputError)
    assert "not enough" in str(result.exception) and "needs" in str(result.exception)


def test_csv_mistakes_name_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("adapter_id,rank,rate\na,8,0.5\nb,eight,0.1\n")
    with pytest.raises(InputError, match=r"bad.csv line 3: rank must be an integer"):
        load_adapters(bad)
    bad.write_text("id,rank\n")
    with pytest.raises(InputError, match="line 1: expected the header adapter_id,rank,rate"):
        load_adapters(bad)


def test_trace_directory_is_summarised(tmp_path):
    (tmp_path / "adapters.csv").write_text("adapter_id,rank\na,8\nb,16\n")
    (tmp_path / "trace.csv").write_text(
        "arrival_time_s,adapter_id,input_tokens,output_tokens\n0,a,10,10\n1,b,10,10\n2,a,10,10\n"
    )
    workload = load_adapters(tmp_path)
    assert [(a.id, a.rank) for a in workload.adapters] == [("a", 8), ("b", 16)]
    assert workload.adapters[0].rate_req_s > workload.adapters[1].rate_req_s > 0


@pytest.mark.slow
def test_loratwin_place_from_the_installed_cli(adapters_csv):
    proc = subprocess.run([sys.executable, "-m", "loratwin.cli", "place", str(adapters_csv), "--gpus", "1"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "not enough" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "loratwin.cli", "place", str(adapters_csv), "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["adapters"] == 30


def test_max_wait_is_reported_and_bounded(app, tmp_path):
    adapters = write_adapters_csv(zipf_layout(300, 40.0, 1.0, ranks=(8, 16), seed=0), tmp_path / "many.csv")
    result = invoke(app, adapters, "--json", "--max-wait", "2")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert all(g["predicted_wait_s"] <= 2.0 for g in doc["gpus"])
    table = invoke(app, adapters, "--max-wait", "2")
    assert "wait s" in table.output


@pytest.mark.parametrize(("flag", "value"), [("--max-wait", "-1"), ("--window", "0"), ("--search-moves", "-1")])
def test_bad_window_or_wait_is_refused(app, adapters_csv, flag, value):
    result = invoke(app, adapters_csv, flag, value)
    assert isinstance(result.exception, InputError)
    assert flag in str(result.exception)


def test_place_says_when_the_count_meets_the_bound(app, tmp_path):
    """The quickstart list needs 2 GPUs and the bound says 2: a proof the placement is the fewest."""
    from importlib import resources

    example = resources.files("loratwin.plan") / "examples" / "quickstart.csv"
    met = invoke(app, example, "--profile", "llama-3.1-8b-instruct")
    assert met.exit_code == 0, met.output
    assert "2 GPUs for 240 adapters" in met.output and "lower bound 2 GPUs (no placement this check accepts uses fewer)" in met.output
    csv = write_adapters_csv(zipf_layout(100, 60.0, 1.0, ranks=(8, 16, 32), seed=0), tmp_path / "zipf.csv")
    above = invoke(app, csv, "--profile", "llama-3.1-8b-instruct")  # 3 GPUs, bound 2
    assert above.exit_code == 0, above.output
    assert "lower bound 2 GPUs;" in above.output


HOT_CSV = "adapter_id,rank,rate\nhot,16,70\n" + "".join(f"quiet-{i},8,0.5\n" for i in range(8))


def test_place_routes_a_hot_adapter_over_its_replicas(app, tmp_path):
    adapters = tmp_path / "hot.csv"
    adapters.write_text(HOT_CSV)
    routing_file, out_file = tmp_path / "routing.json", tmp_path / "placement.yaml"
    result = invoke(app, adapters, "--json", "--routing-out", routing_file, "--out", out_file)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    routing = doc["routing"]
    assert set(routing) == {"hot", *(f"quiet-{i}" for i in range(8))}
    assert len(routing["hot"]) >= 2 and sum(routing["hot"].values()) == pytest.approx(1.0)
    assert all(list(routing[f"quiet-{i}"].values()) == [1.0] for i in range(8))
    # each GPU of the hot adapter lists it, with the rate that GPU gets
    for gpu, weight in routing["hot"].items():
        entry = doc["gpus"][int(gpu)]
        rate = entry["adapter_rates_req_s"][entry["adapters"].index("hot")]
        assert rate == pytest.approx(70 * weight)
    assert json.loads(routing_file.read_text()) == routing
    assert yaml.safe_load(out_file.read_text())["routing"] == {a: {int(g): w for g, w in gpus.items()}
                                                               for a, gpus in routing.items()}
    text = invoke(app, adapters, "--routing-out", tmp_path / "routing.yaml")
    assert text.exit_code == 0, text.output
    routes = text.output[text.output.index("Routing"):]
    assert "hot: GPU 0 " in routes and "quiet-0" not in routes
    assert yaml.safe_load((tmp_path / "routing.yaml").read_text()) == yaml.safe_load(out_file.read_text())["routing"]
