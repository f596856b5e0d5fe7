"""`loratwin report`: an HTML report of a result."""

from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import app, err_console


@app.command("report")
def report_command(
    result: Annotated[Path, typer.Argument(help="A result: a `simulate --out` or `validate --out` directory, a sweep's results directory (or a Parquet file of it), a `place --out` file or a saved `recommend --json`.")],
    out: Annotated[Path, typer.Option(help="Directory for index.html and the PNG charts.")],
) -> None:
    """Write a self-contained HTML report (opens offline) with PNG charts for a result."""
    from loratwin.files import Output, check_outputs
    from loratwin.report import write_report
    from loratwin.report.html import REPORT_FILES

    check_outputs(Output("--out", out, folder=True, own=REPORT_FILES), inputs=[result])
    err_console.print(f"wrote {write_report(result, out)}")
