"""Real request lengths: ShareGPT (prompt, output) token counts per built-in model tokenizer.

The tables ship as package data (see workload/data/README.md for how they were built); each row is
one ShareGPT conversation that the reference client's filter keeps. Sampling draws whole rows, so
the correlation between a prompt's and its answer's length is kept.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from importlib import resources

import numpy as np

from loratwin.errors import InputError

__all__ = ["available_tables", "load_length_table", "sample_from_table"]

_DATA_PACKAGE = "loratwin.workload.data"
_PREFIX = "sharegpt_lengths_"
_SUFFIX = ".csv.gz"
_COLUMNS = ["prompt_tokens", "output_tokens"]


# The table used when neither the workload nor the simulated model names one.
DEFAULT_TABLE = "llama-3.1-8b-instruct"


def resolve_table(requested: str | None, model_name: str | None) -> str:
    """The table a ShareGPT length spec uses: the one it names, else the model's own, else the default."""
    if requested is not None:
        return requested
    if model_name is not None and model_name in available_tables():
        return model_name
    return DEFAULT_TABLE


def available_tables() -> list[str]:
    """Model names that have a length table, sorted."""
    names = (entry.name for entry in resources.files(_DATA_PACKAGE).iterdir())
    return sorted(n[len(_PREFIX) : -len(_SUFFIX)] for n in names if n.startswith(_PREFIX) and n.endswith(_SUFFIX))


@functools.cache
def _read_table(model_name: str) -> tuple[np.ndarray, np.ndarray]:
    raw = resources.files(_DATA_PACKAGE).joinpath(f"{_PREFIX}{model_name}{_SUFFIX}").read_bytes()
    reader = csv.reader(io.StringIO(gzip.decompress(raw).decode("ascii")))
    header = next(reader)
    if header != _COLUMNS:
        raise InputError(f"length table {model_name!r}: expected columns {_COLUMNS}, got {header}")
    values = np.array([[int(p), int(o)] for p, o in reader], dtype=np.int32).reshape(-1, 2)
    prompts, outputs = values[:, 0].copy(), values[:, 1].copy()
    # Cached arrays are shared between callers: make accidental writes fail loudly.
    prompts.flags.writeable = False
    outputs.flags.writeable = False
    return prompts, outputs


def load_length_table(model_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(prompt_tokens, output_tokens) int32 arrays of a model's table, in dataset order (read-only, cached)."""
    available = available_tables()
    if model_name not in available:
        raise InputError(f"no ShareGPT length table for model {model_name!r}; available: {', '.join(available)}")
    return _read_table(model_name)


def sample_from_table(model_name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` (prompt, output) pairs drawn uniformly with replacement from the table's rows, as int32 arrays.

    Deterministic for a given generator state.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    prompts, outputs = load_length_table(model_name)
    rows = rng.integers(0, len(prompts), size=n)
    return prompts[rows], outputs[rows]
