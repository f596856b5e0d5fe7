"""`--report DIR` on sweep and recommend writes an HTML page with its charts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GRID = """\
name: tiny
duration_s: 120
served: [8, 16]
max_loras: [8]
rates: [[0.8, 0.4, 0.2]]
ranks: [[8, 16]]
"""
QUICKSTART = Path(__file__).resolve().parents[2] / "src" / "loratwin" / "plan" / "examples" / "quickstart.csv"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loratwin.cli", *args], capture_output=True, text=True, timeout=600)


def _charts(index: Path) -> int:
    return index.read_text().count('src="data:image/png;base64,')


@pytest.mark.slow
def test_sweep_report(tmp_path):
    (tmp_path / "grid.yaml").write_text(GRID)
    proc = run_cli("sweep", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "sweep"), "--workers", "1",
                   "--report", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    assert _charts(tmp_path / "report" / "index.html") >= 2


@pytest.mark.slow
def test_recommend_report(tmp_path):
    proc = run_cli("recommend", str(QUICKSTART), "--report", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    index = tmp_path / "report" / "index.html"
    assert _charts(index) == 2
    assert "--max-loras" in index.read_text()
