"""Python source that runs one group of loratwin commands in a subprocess, the way the main CLI
runs them: a LoratwinError becomes one `error:` line on stderr and exit status 2."""

from __future__ import annotations


def command_group_script(register_module: str, prelude: str = "") -> str:
    """`python -c` source for the commands `register_module.register` adds; `prelude` runs first."""
    return prelude + f"""\
import sys, typer
from loratwin.errors import LoratwinError
from {register_module} import register
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
register(app)
try:
    app()
except LoratwinError as exc:
    print(f"error: {{exc}}", file=sys.stderr)
    sys.exit(2)
"""
