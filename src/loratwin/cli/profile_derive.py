"""`loratwin profile derive`."""

from loratwin.cli.profile import profile_app  # noqa: F401
