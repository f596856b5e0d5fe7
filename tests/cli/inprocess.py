"""`loratwin` run in this process, through `loratwin.cli.main` as the console script runs it (its error
printer included), with stdout and stderr captured: fast, and any exception that escapes shows."""

from __future__ import annotations

import contextlib
import io
import re
import sys
import traceback

from loratwin.cli import main


def run_main(args: list[str]) -> tuple[int | str, str, str]:
    """`loratwin ARGS`: (exit status, stdout, stderr without colour codes); an exception that escapes
    `main` gives the status "uncaught" and its traceback in stderr."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["loratwin", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code: int | str = 0
            except SystemExit as exc:
                code = exc.code
            except BaseException:  # noqa: BLE001 - the caller's assertions fail, showing what escaped
                code = "uncaught"
                err.write(traceback.format_exc())
    finally:
        sys.argv = argv
    return code, out.getvalue(), re.sub(r"\x1b\[[0-9;]*m", "", err.getvalue())
