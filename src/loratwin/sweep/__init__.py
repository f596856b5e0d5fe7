"""Sweeps: grids of twin runs, run in parallel (local processes or Ray) into a resumable results store,
then turned into optimum labels (per workload: the frontier per max_loras and the best configuration)."""

from loratwin.sweep.execute import SweepSummary, run_sweep
from loratwin.sweep.grid import GridSpec, expand, grid_from_yaml, load_grid, paper_grid
from loratwin.sweep.labels import compute_labels, write_labels
from loratwin.sweep.store import ResultStore, read_results

__all__ = [
    "GridSpec",
    "ResultStore",
    "SweepSummary",
    "compute_labels",
    "expand",
    "grid_from_yaml",
    "load_grid",
    "paper_grid",
    "read_results",
    "run_sweep",
    "write_labels",
]
