"""`--max-memory` and `--max-time`: the flags of the commands that generate work. Each calls
`configure` once, before reading its input, with these flags and what its input is for; the
budget's note about long work goes to stderr."""

from typing import Annotated

import typer

MaxMemoryFlag = Annotated[str | None, typer.Option(
    "--max-memory", metavar="SIZE",
    help="Refuse, before starting, work estimated to need more memory than this, e.g. 8G or 500M. "
         "Default: the LORATWIN_MAX_MEMORY environment variable, else half of this machine's memory.")]
MaxTimeFlag = Annotated[str | None, typer.Option(
    "--max-time", metavar="DURATION",
    help="Refuse, before starting, work estimated to take longer than this, e.g. 30m, 2h or 1d (work estimated "
         "at over a minute is announced). Default: the LORATWIN_MAX_TIME environment variable, else 1h.")]


def configure(command: str, max_memory: str | None, max_time: str | None, **job):
    """`loratwin.budget.configure` for a command: its limits, its job, and its notes on stderr."""
    from loratwin.budget import configure as configure_budget
    from loratwin.cli.app import err_console

    def note(line: str) -> None:
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)

    return configure_budget(command, max_memory, max_time=max_time, notify=note, **job)
