"""`loratwin profile fit`."""

from loratwin.cli.profile import profile_app  # noqa: F401
