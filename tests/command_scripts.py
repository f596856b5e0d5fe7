"""Python source that runs the `loratwin` CLI in a subprocess after some set-up (`python -c SOURCE ARGS...`),
through `loratwin.cli.main`: a LoratwinError becomes one `error:` line on stderr and exit status 2."""

from __future__ import annotations


def cli_script(prelude: str = "") -> str:
    """`python -c` source for the whole `loratwin` CLI; `prelude` runs first."""
    return prelude + """\
from loratwin.cli import main
main()
"""
