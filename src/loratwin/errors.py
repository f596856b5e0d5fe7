"""Errors a user can cause and fix: the CLI prints them without a traceback."""


class LoratwinError(Exception):
    """Base class for mistakes in the user's input (files, flags, configuration)."""


class InputError(LoratwinError):
    """Bad input: the message names the file, line or field and what was expected."""


class InfeasibleConfigError(LoratwinError):
    """A server configuration that real vLLM would refuse to start (e.g. no KV cache memory left)."""


class OutputError(LoratwinError):
    """A result could not be written where the user asked (the message names the place and why)."""
