"""The `loratwin` Typer app, the helpers its commands share, and `main`, which turns user mistakes into
one `error:` line and exit status 2.

Start-up stays light: this module and the command modules import typer, rich's console and the
standard library only; each command imports the stages it runs (numpy, numba, pyarrow, ...) when it runs.
"""

import sys
from typing import Annotated

import typer
from rich.console import Console

from loratwin.errors import LoratwinError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="A digital twin of multi-LoRA vLLM serving: how many adapters per GPU, with how many slots.",
)
err_console = Console(stderr=True)


def _version() -> str:
    """The installed distribution's version; the package's own when it is not installed (a source checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loratwin")
    except PackageNotFoundError:
        from loratwin.version import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"loratwin {_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print loratwin's version and exit.")] = False,
) -> None:
    pass


def _out_console() -> Console:
    # rich assumes 80 columns when stdout is not a terminal, which squeezes the tables
    return Console() if sys.stdout.isatty() else Console(width=120)


def _parse_list(text: str, flag: str, kind: type) -> list:
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(kind(part))
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise LoratwinError(f"{flag}: {part!r} is not {what} (expected a comma-separated list, e.g. 1.6,0.8,0.4)") from None
    if not values:
        raise LoratwinError(f"{flag}: expected a comma-separated list of values, got {text!r}")
    return values


def _progress(total: int, description: str):
    """A progress bar on stderr; returns (context manager, advance callback)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    )
    task = progress.add_task(description, total=total)
    return progress, lambda: progress.advance(task)


def main() -> None:
    """Entry point: user mistakes print one clear message and exit 2, without a traceback."""
    try:
        app(standalone_mode=True)
    except LoratwinError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
