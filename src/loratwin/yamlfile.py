"""Reading YAML given by users: syntax errors become InputError naming the file, line and column; a file
that cannot be read, or is not text, an InputError naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from loratwin.errors import InputError


def describe_yaml_error(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is None:
        return f"invalid YAML: {problem}"
    # yaml marks are 0-based; editors count from 1.
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"


def parse_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load(text)`; a syntax error raises InputError prefixed with `source`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"{source}: {describe_yaml_error(err)}") from None


def read_user_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file the user gave; an InputError naming it (and `what` it should be) for a
    folder, a file that cannot be read or one that is not text."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a {what}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a {what}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
