"""Reading YAML given by users: syntax errors become InputError naming the file, line and column; a file
that cannot be read, or is not text, an InputError naming the file."""

from __future__ import annotations

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
