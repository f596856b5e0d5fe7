"""Start-up: `--help`, `--version`, a command's `--help` and mistakes in the flags answer without loading
the heavy libraries (numba, pyarrow, scipy, scikit-learn, matplotlib); the CLI stays out of the stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import loratwin

HEAVY = ("numba", "pyarrow", "scipy", "sklearn", "matplotlib")
PACKAGE = Path(loratwin.__file__).parent

# Runs the CLI in-process with the given arguments, then prints its exit status, its stdout and stderr,
# and the heavy modules it loaded, as one JSON line.
PROBE = f"""\
import contextlib, io, json, sys
from loratwin.cli import main
sys.argv = ["loratwin", *sys.argv[1:]]
out, err, code = io.StringIO(), io.StringIO(), 0
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        main()
    except SystemExit as exc:
        code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {set(HEAVY)!r})
print(json.dumps({{"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "heavy": heavy}}))
"""


def env() -> dict[str, str]:
    """This process's environment with the loratwin under test first on the path."""
    paths = [str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


def probe(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def expected_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loratwin")
    except PackageNotFoundError:
        return loratwin.__version__


COMMANDS = ["simulate", "report", "profiles", "validate", "calibrate", "sweep", "labels", "train", "explain",
            "recommend", "quickstart", "place", "workload"]


def test_help_lists_every_command_without_heavy_imports():
    result = probe("--help")
    assert result["code"] == 0 and result["heavy"] == []
    # rows of the Commands panel: "│ name    help", a wrapped help line starts with spaces
    listed = [line.split()[1] for line in result["stdout"].splitlines()
              if line.startswith("│ ") and line[2] != " " and line.split()[1] in COMMANDS]
    assert listed == COMMANDS
    assert "--version" in result["stdout"]


def test_version_without_heavy_imports():
    result = probe("--version")
    assert result == {"code": 0, "stdout": f"loratwin {expected_version()}\n", "stderr": "", "heavy": []}


@pytest.mark.parametrize("command", [["simulate"], ["place"], ["recommend"], ["sweep"], ["train"], ["workload", "describe"],
                                     ["profile", "derive"]])
def test_command_help_without_heavy_imports(command):
    result = probe(*command, "--help")
    assert result["code"] == 0 and result["heavy"] == []
    assert "Usage:" in result["stdout"]


@pytest.mark.parametrize("args, message", [
    (["simulate", "--served", "4", "--rates", "x", "--ranks", "8", "--max-loras", "2"],
     "error: --rates: 'x' is not a number (expected a comma-separated list, e.g. 1.6,0.8,0.4)\n"),
    (["simulate", "--served", "4", "--rates", "1", "--ranks", "8.5", "--max-loras", "2"],
     "error: --ranks: '8.5' is not an integer (expected a comma-separated list, e.g. 8,16,32)\n"),
    (["simulate", "--max-loras", "2"],
     "error: give exactly one workload: --served N --rates R1,R2,.. --ranks K1,K2,.., or --workload FILE, "
     "or --trace DIR\n"),
    (["profile", "derive", "--model", "Llama-3.1-8B-Instruct", "--gpu", "h200", "--out", "p.yaml", "--max-num-seqs", "0"],
     "error: --max-num-seqs: Input should be greater than 0, got 0\n"),
    (["explain", "--target", "nope"],
     "error: --target: unknown 'nope' (known: best_served, best_max_loras, best_total_tok_s, total_tok_s, starved)\n"),
])
def test_input_errors_are_one_line_and_exit_2_without_heavy_imports(args, message):
    result = probe(*args)
    assert result == {"code": 2, "stdout": "", "stderr": message, "heavy": []}


def test_a_flag_of_the_wrong_type_is_a_usage_error_without_heavy_imports():
    result = probe("simulate", "--max-loras", "x")
    assert result["code"] == 2 and result["heavy"] == []
    assert "--max-loras" in result["stderr"]


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "loratwin.cli", "--version"], capture_output=True, text=True,
                          env=env(), timeout=120)
    assert proc.returncode == 0 and proc.stdout == f"loratwin {expected_version()}\n"


def test_import_loratwin_is_light_and_its_public_names_still_import():
    code = ("import sys, loratwin; light = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'numpy', 'numba', 'pydantic', 'pyarrow', 'scipy'}); "
            "from loratwin import ServerConfig, reference_layout, simulate, load_profile, InputError; "
            "print(light, ServerConfig.__name__, simulate.__module__, sorted(loratwin.__all__) == "
            "sorted(n for n in loratwin.__all__ if hasattr(loratwin, n)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "ServerConfig", "loratwin.twin.simulation", "True"]


def test_the_cli_defaults_written_out_agree_with_the_planner():
    from loratwin.cli import judging, place
    from loratwin.plan.judge import AcceptanceRule
    from loratwin.plan.placement.result import DEFAULT_ADAPTER_DIR
    from loratwin.plan.placement.search import DEFAULT_SEARCH_MOVES

    rule = AcceptanceRule()
    assert judging.DEFAULT_MAX_WAIT_S == rule.max_wait_s
    assert judging.DEFAULT_STARVATION_THRESHOLD == rule.starvation_threshold
    assert judging.DEFAULT_WINDOW_S == rule.window_s
    assert place.DEFAULT_SEARCH_MOVES == DEFAULT_SEARCH_MOVES
    assert judging.DEFAULT_ADAPTER_DIR == DEFAULT_ADAPTER_DIR
