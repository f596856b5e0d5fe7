"""`--max-memory`: the flag of the commands that generate work. Each calls `loratwin.budget.configure`
once, before reading its input, with this flag and what its input is for."""

from typing import Annotated

import typer

MaxMemoryFlag = Annotated[str | None, typer.Option(
    "--max-memory", metavar="SIZE",
    help="Refuse, before starting, work estimated to need more memory than this, e.g. 8G or 500M. "
         "Default: the LORATWIN_MAX_MEMORY environment variable, else half of this machine's memory.")]
