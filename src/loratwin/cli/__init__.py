"""Command line: `loratwin <verb>`. Flags use vLLM's names where they mean the same thing.

One module per command group; importing them adds their commands to `app`, in the order `loratwin --help`
lists them. The modules import the stages they run inside the commands, so `--help`, `--version` and
mistakes in the flags answer without loading numba, pyarrow, scipy, scikit-learn or matplotlib
(tests/cli/test_startup.py; benchmarks/cli_startup.py times `--help` against `import numpy`).

The command modules leave out `from __future__ import annotations` on purpose: typer reads every
command's signature twice to build `--help`, and string annotations are compiled each time (~25 ms).
"""

from loratwin.cli.app import app, main

# the order `--help` lists the commands in
from loratwin.cli import simulate, report, workload, profiles, validate, sweep, learn, recommend, place, cluster, drift  # isort: skip  # noqa: F401
from loratwin.cli import profile, profile_derive, profile_lab, profile_fit  # isort: skip  # noqa: F401

__all__ = ["app", "main"]
