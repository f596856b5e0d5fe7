"""`python -m loratwin.cli`: the same as the `loratwin` command."""

from loratwin.cli import main

main()
