"""Modules that once imported each other now import one way only (function-level imports count)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def imported_modules(module: str) -> set[str]:
    path = SRC / (module.replace(".", "/") + ".py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("loratwin.twin.result", "loratwin.twin.simulation"),
        ("loratwin.workload.spec", "loratwin.workload.lengths"),
    ],
)
def test_lower_module_does_not_import_the_upper_one(lower, upper):
    assert upper not in imported_modules(lower)
