"""What the commands print and accept: text printed literally (square brackets included), help as written (no
markup, no emoji codes), flags without a type in --help, profile names whole in any width, place --adapter-dir,
and `loratwin report` on a sweep's results folder and on a saved `recommend --json`."""

from __future__ import annotations

import importlib
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from .inprocess import run_main

# the module (the package's attribute `app` is the Typer app)
app_module = importlib.import_module("loratwin.cli.app")

RED_CSV = "adapter_id,rank,rate\n[red]a,8,0.5\nb,16,0.2\n"
COMMANDS = [["simulate"], ["report"], ["workload", "describe"], ["profiles"], ["validate"], ["calibrate"], ["sweep"],
            ["labels"], ["train"], ["explain"], ["recommend"], ["quickstart"], ["place"], ["simulate-cluster"], []]


@pytest.mark.parametrize("message", [
    "train needs the learn extra: pip install 'loratwin[learn]'",
    "dir[x]/a[b].csv line 3: duplicate adapter_id '[red]a'",
    "[bold]not bold[/bold] \\[escaped]",
])
def test_the_error_printer_prints_messages_literally(message, capsys):
    app_module.print_error(message)
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_message_of_several_lines_prints_as_one():
    stream = io.StringIO()
    console, app_module.err_console = app_module.err_console, Console(file=stream, width=40)
    try:
        app_module.print_error("first part\nsecond part, " + "long " * 20)
    finally:
        app_module.err_console = console
    assert stream.getvalue().count("\n") == 1 and stream.getvalue().startswith("error: first part second part")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "loratwin")
def test_flags_show_no_type_in_help(command):
    code, out, err = run_main([*command, "--help"])
    assert code == 0, err
    assert "--help" in out and "<bool>" not in out


@pytest.mark.parametrize(("command", "shown"), [
    (["simulate-cluster"], "pip install 'loratwin[ray]'"),  # not read as rich markup
    (["recommend"], "--slo itl_p99:100:"),  # not read as an emoji code
    (["place"], "--slo itl_p99:100:"),
])
def test_help_prints_as_written(command, shown, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    code, out, err = run_main([*command, "--help"])
    assert code == 0, err
    assert shown in out
    assert not any(ord(c) >= 0x1F000 for c in out)


def test_profile_names_print_whole_in_a_narrow_console():
    from loratwin.profiles import builtin_profiles, load_profile
    from loratwin.report.console import print_profiles

    stream = io.StringIO()
    print_profiles([load_profile(n) for n in builtin_profiles()], Console(file=stream, width=40))
    for name in builtin_profiles():
        assert name in stream.getvalue()


@pytest.fixture
def red_csv(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("red.csv").write_text(RED_CSV)
    return Path("red.csv")


def test_place_uses_the_adapter_dir_and_prints_ids_literally(red_csv):
    code, out, err = run_main(["place", str(red_csv), "--adapter-dir", "/srv/lora"])
    assert code == 0, err
    assert "# GPU 0: b, [red]a" in out and "'[red]a=/srv/lora/[red]a'" in out and "b=/srv/lora/b" in out
    assert "adapters in /srv/lora" in out
    code, out, err = run_main(["place", str(red_csv), "--json"])
    assert code == 0, err
    assert json.loads(out)["vllm_serve_commands"][0].endswith("b=./adapters/b '[red]a=./adapters/[red]a'")


def test_recommend_prints_ids_literally_and_writes_the_command_with_json(red_csv):
    code, out, err = run_main(["recommend", str(red_csv), "--json", "--command-out", "serve.sh"])
    assert code == 0, err
    assert json.loads(out)["served_adapter_ids"] == ["b", "[red]a"]
    assert Path("serve.sh").read_text().endswith("'[red]a=./adapters/[red]a'\n")
    code, out, err = run_main(["recommend", str(red_csv)])
    assert code == 0, err
    assert "(as place fills a GPU: the largest rank first, busy and quiet adapters alternately: b, [red]a)" in out


def test_report_on_a_saved_recommendation(red_csv):
    code, out, _ = run_main(["recommend", str(red_csv), "--json"])
    Path("rec.json").write_text(out)
    code, out, err = run_main(["report", "rec.json", "--out", "report"])
    assert code == 0 and err == "wrote report/index.html\n", err
    html = Path("report/index.html").read_text()
    assert "2 adapters on 1 GPU" in html and "--max-loras" in html and "recommend (cost-model)" in html


@pytest.mark.slow
def test_report_on_a_sweep_results_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("grid.yaml").write_text("name: tiny\nduration_s: 60\nserved: [8, 16]\nmax_loras: [8]\n"
                                 "rates: [[0.8, 0.4, 0.2]]\nranks: [[8, 16]]\n")
    code, _, err = run_main(["sweep", "grid.yaml", "--out", "sweep", "--workers", "1", "--report", "sweep/report"])
    assert code == 0, err
    code, _, err = run_main(["report", "sweep", "--out", "again"])
    assert code == 0 and err == "wrote again/index.html\n", err
    assert Path("again/index.html").read_text() == Path("sweep/report/index.html").read_text()
    # a second report replaces the first whole
    code, _, err = run_main(["report", "sweep", "--out", "again"])
    assert code == 0, err
    assert sorted(p.name for p in Path(".").iterdir()) == ["again", "grid.yaml", "sweep"]


def test_profiles_into_a_pipe_are_whole():
    from loratwin.profiles import builtin_profiles, load_profile

    code, out, err = run_main(["profiles"])  # stdout is not a terminal here
    assert code == 0, err
    assert "…" not in out
    for profile in (load_profile(n) for n in builtin_profiles()):
        assert all(value in out for value in (profile.name, profile.model, profile.gpu, profile.engine))


@pytest.mark.slow
def test_a_sweep_clamps_its_workers_and_quotes_its_next_command_and_a_damaged_part_is_one_warning(tmp_path, monkeypatch):
    from loratwin.sweep.runners import default_workers

    monkeypatch.chdir(tmp_path)
    Path("grid.yaml").write_text("name: tiny\nduration_s: 60\nserved: [8, 16]\nmax_loras: [8]\n"
                                 "rates: [[0.8, 0.4, 0.2]]\nranks: [[8, 16]]\n")
    code, out, err = run_main(["sweep", "grid.yaml", "--out", "my sweep", "--workers", "100000"])
    assert code == 0, err
    cpus = default_workers()
    assert f"note: --workers 100000: this machine has {cpus} CPUs for this process; running {cpus} workers" in err
    assert f"{cpus} workers, local" in out
    assert "next: loratwin labels 'my sweep'" in out
    for part in Path("my sweep/parts").glob("*.parquet"):
        part.write_text("not parquet")
    code, out, err = run_main(["report", "my sweep", "--out", "r"])
    assert code == 0, err
    warning, *rest = err.splitlines()
    assert warning.startswith("warning: my sweep/parts/part-") and "unreadable part file" in warning, err
    assert rest == ["wrote r/index.html"] and "UserWarning" not in err
