"""The `loratwin` Typer app, the helpers its commands share, and `main`, which turns user mistakes (a
flag typer refuses, a LoratwinError, a file that cannot be read or written) into one `error:` line on
stderr and exit status 2, and a warning (a damaged part of a sweep store left out) into one plain
`warning:` line.

Messages print literally: text a user gave (paths, adapter ids, notes) may hold square brackets, which
rich would read as markup. `err_console` has markup off; consoles that style text escape what they quote.

Start-up stays light: this module and the command modules import typer, rich's console and the
standard library only; each command imports the stages it runs (numpy, numba, pyarrow, ...) when it runs.
"""

import sys
import warnings
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from loratwin.errors import LoratwinError


def _flags_without_metavar() -> None:
    """typer 0.2x's help shows a type beside every option, `<bool>` beside flags (--json, --verify, --help)
    included, as if they took a value. Flags take none: show nothing there. (Older typers show none.)"""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - a typer without it
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "flags_bare", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich.flags_bare = True
    TyperOption.display_type_rich = display_type_rich


def _literal_rich_text() -> None:
    """typer reads help text as rich markup: `pip install 'loratwin[ray]'` loses `[ray]` and
    `--slo itl_p99:100:` turns `:100:` into an emoji. Help text prints as written (no markup, no
    emoji codes), as messages do. Patched when help is first formatted, so that start-up stays light."""
    from typer import rich_utils

    made = getattr(rich_utils, "_make_rich_text", None)
    if made is None or getattr(made, "literal", False):
        return

    def _make_rich_text(*, text: str, style: str = "", markup_mode):
        if markup_mode != "rich" or rich_utils._has_ansi_character(text):
            return made(text=text, style=style, markup_mode=markup_mode)
        import inspect

        return rich_utils.highlighter(Text(inspect.cleandoc(text), style=style))

    _make_rich_text.literal = True
    rich_utils._make_rich_text = _make_rich_text


def _help_prints_literally() -> None:
    try:
        from typer.core import TyperCommand, TyperGroup
    except ImportError:  # pragma: no cover - a typer without them
        return
    for cls in (TyperCommand, TyperGroup):
        shown = cls.format_help
        if getattr(shown, "literal", False):
            continue

        def format_help(self, ctx, formatter, _shown=shown):
            _literal_rich_text()
            return _shown(self, ctx, formatter)

        format_help.literal = True
        cls.format_help = format_help


_flags_without_metavar()
_help_prints_literally()
app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="A digital twin of multi-LoRA vLLM serving: how many adapters per GPU, with how many slots.",
)
err_console = Console(stderr=True, markup=False, highlight=False)
# click's exception classes, found through typer's so that this works whether typer vendors click or not
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


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
    """A comma-separated flag value such as `--rates 1.6,0.8` or `--ranks 8,16`: every item must be a
    value of `kind` (an empty item, as in `1,,2` or a trailing comma, is refused by its position)."""
    what, example = {int: ("an integer", "8,16,32"), str: ("a name", "tree,figs")}.get(kind, ("a number", "1.6,0.8,0.4"))
    if not text.strip():
        raise LoratwinError(f"{flag}: expected a comma-separated list of values, each {what} (e.g. {example}), got {text!r}")
    parts = text.split(",")
    values = []
    for position, part in enumerate(parts, start=1):
        part = part.strip()
        if not part:
            raise LoratwinError(f"{flag}: item {position} of {len(parts)} is empty in {text!r} "
                                f"(expected a comma-separated list, each {what}, e.g. {example})")
        try:
            values.append(kind(part))
        except ValueError:
            raise LoratwinError(f"{flag}: {part!r} is not {what} (expected a comma-separated list, e.g. {example})") from None
    return values


class _LazyProgress:
    """A progress bar on stderr that appears at the first step done: a command that fails before any
    (a missing input file, a refused store) prints its error line alone. Use as a context manager."""

    def __init__(self, progress) -> None:
        self._progress = progress

    @property
    def console(self) -> Console:
        return self._progress.console

    def __enter__(self) -> "_LazyProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        stop_progress(self._progress)


def stop_progress(progress) -> None:
    """Stop a rich Progress if it started (rich prints an empty line when stopping one that never did)."""
    if progress.live.is_started:
        progress.stop()


def _progress(total: int, description: str):
    """A progress bar on stderr, shown from the first step done; returns (context manager, advance callback)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    )
    task = progress.add_task(description, total=total)

    def advance() -> None:
        progress.start()
        progress.advance(task)

    return _LazyProgress(progress), advance


def check_threshold(value: float, flag: str) -> None:
    """A starvation threshold flag: loratwin.threshold's rule."""
    from loratwin.threshold import check_threshold as check

    check(value, flag)


def print_error(message: str) -> None:
    """One `error:` line on stderr, the message printed as it is (no markup, no wrapping)."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", " ".join(message.splitlines())), soft_wrap=True)


def _usage_message(exc: Exception) -> str:
    """A click usage error (unknown flag, a value of the wrong type, a missing argument) in one line."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    return exc.format_message() + hint


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one plain line on stderr, without the file, line and source that Python adds."""
    err_console.print(f"warning: {' '.join(str(message).splitlines())}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: user mistakes print one clear line and exit 2, without a traceback."""
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        status = app(standalone_mode=False)
    except _CLICK_ERROR as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            print_error(_usage_message(exc))
        sys.exit(exc.exit_code)
    except LoratwinError as exc:
        print_error(str(exc))
        sys.exit(2)
    except OSError as exc:  # a file that could not be read or written, named by the error
        where = f"{exc.filename}: " if exc.filename else ""
        print_error(f"{where}{exc.strerror or exc}")
        sys.exit(2)
    finally:
        warnings.showwarning = shown
    sys.exit(status if isinstance(status, int) else 0)
