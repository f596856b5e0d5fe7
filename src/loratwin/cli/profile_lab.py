"""`loratwin profile lab`."""

from loratwin.cli.profile import profile_app  # noqa: F401
