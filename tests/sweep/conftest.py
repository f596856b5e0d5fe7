"""Small grids and helpers shared by the sweep tests (short simulated windows keep them fast)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from command_scripts import cli_script

# A grid of 14 runs (two workloads, max_loras 8 and 16 over served 8..32), 5 simulated minutes each.
SMALL_GRID = """\
name: small
duration_s: 300
served: [8, 16, 24, 32]
max_loras: [8, 16]
rates: [[1.6, 0.8, 0.4], [0.4, 0.2, 0.1]]
ranks: [[8, 16]]
server: {client_max_waiting: 25500}
"""

# Where starvation sets in at different served counts for each max_loras: 88 runs in full.
SEARCH_GRID = """\
name: search-test
duration_s: 300
served: {start: 8, stop: 128, step: 8}
max_loras: [8, 16, 32]
rates: [[0.4, 0.2, 0.1], [0.8, 0.4, 0.2]]
ranks: [[8, 16]]
server: {client_max_waiting: 25500}
"""

# The `loratwin` CLI, as a subprocess would run it.
CLI_SCRIPT = cli_script()


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI_SCRIPT, *args]


@pytest.fixture
def write_grid(tmp_path: Path):
    def write(text: str, name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
