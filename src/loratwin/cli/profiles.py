"""`loratwin profiles`: the built-in profiles."""

import sys
from typing import Annotated

import typer

from loratwin.cli.app import _out_console, app

# a console this wide never wraps the table (it takes the width its content needs)
PIPE_WIDTH = 10_000


@app.command()
def profiles(
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the built-in profiles (model x GPU cost models)."""
    import json

    from loratwin.profiles import builtin_profiles, load_profile

    loaded = [load_profile(name) for name in builtin_profiles()]
    if json_out:
        rows = [{"name": p.name, "model": p.model, "gpu": p.gpu, "engine": p.engine, "fitted": p.fitted} for p in loaded]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        from rich.console import Console

        from loratwin.report.console import print_profiles

        # into a pipe or a file, each profile on its lines whole: as wide as the table needs
        print_profiles(loaded, _out_console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH))
