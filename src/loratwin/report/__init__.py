"""Presenting results: terminal tables (console) and self-contained HTML reports with charts.

Each kind of result has one module here exposing KIND, `matches(path)` (does this directory or file
hold that kind?) and `write_from_path(path, out_dir)`; `write_report` tries them in KIND_MODULES
order. The modules import matplotlib only when drawing, so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from loratwin.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from loratwin.twin import RunResult
    from loratwin.validate.replay import ReplayResult

# Order matters where a directory could match several kinds: the most specific first.
KIND_MODULES = ("simulation", "validation", "sweep", "plan")


def _kind(name: str):
    return importlib.import_module(f"loratwin.report.{name}")


def detect_kind(path: str | Path) -> str:
    """The kind of result at `path`, from the files there; InputError when none fits."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    for name in KIND_MODULES:
        if _kind(name).matches(path):
            return _kind(name).KIND
    lacking = _kind("simulation").missing(path)
    if lacking:
        raise InputError(f"{path}: a `simulate --out` folder without {', '.join(lacking)}; the result is incomplete: "
                         "run simulate again with --out")
    raise InputError(
        f"{path} holds no result loratwin can report on: expected the --out directory of "
        "`simulate` (summary.json, requests.parquet, timeseries.parquet), of `validate` "
        "(runs.csv, errors.json) or of `sweep` (manifest.json, parts/), a sweep table (Parquet with "
        "workload_key, max_loras, served, total_tok_s, starved), a placement (YAML/JSON with a 'gpus' "
        "list) or a saved `recommend --json`"
    )


def write_report(path: str | Path, out_dir: str | Path) -> Path:
    """Report on the result saved at `path` (its kind detected from the files); returns index.html."""
    kind = detect_kind(path)
    module = next(_kind(n) for n in KIND_MODULES if _kind(n).KIND == kind)
    try:
        return module.write_from_path(Path(path), Path(out_dir))
    # a damaged or hand-edited file of the result (JSON, YAML, CSV or Parquet; pyarrow's are
    # ValueErrors): a value of the wrong type shows up as one of these
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
        raise InputError(f"{path}: cannot read the {kind} result ({type(err).__name__}: {err})") from None


def write_simulation_report(result: RunResult, out_dir: str | Path) -> Path:
    return _kind("simulation").write_simulation_report(result, out_dir)


def write_plan_report(plan: dict, out_dir: str | Path) -> Path:
    """A placement (or a one-GPU recommendation) as `Placement.to_dict()` gives it."""
    return _kind("plan").write_plan_report(plan, out_dir)


def write_validation_report(results: Sequence[ReplayResult], table: list[dict], out_dir: str | Path) -> Path:
    return _kind("validation").write_validation_report(results, table, out_dir)


def write_sweep_report(table, out_dir: str | Path) -> Path:
    """`table`: a pyarrow Table, a column dict or a Parquet path (workload_key, max_loras, served,
    total_tok_s, starved)."""
    return _kind("sweep").write_sweep_report(table, out_dir)


__all__ = [
    "KIND_MODULES",
    "detect_kind",
    "write_report",
    "write_simulation_report",
    "write_sweep_report",
    "write_validation_report",
]
