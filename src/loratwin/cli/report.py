"""`loratwin report`: an HTML report of a result."""

from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import app, err_console


@app.command("report")
def report_command(
    result: Annotated[Path, typer.Argument(help="A result: a `simulate --out` or `validate --out` directory, or a sweep's Parquet file or directory.")],
    out: Annotated[Path, typer.Option(help="Directory for index.html and the PNG charts.")],
) -> None:
    """Write a self-contained HTML report (opens offline) with PNG charts for a result."""
    from loratwin.report import write_report

    err_console.print(f"wrote {write_report(result, out)}")
