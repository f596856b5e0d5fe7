"""Fidelity: replay real vLLM runs through the twin, measure the error, fit profiles."""

from loratwin.validate.errors import error_table, half_smape
from loratwin.validate.replay import ReplayResult, replay_runs
from loratwin.validate.runs import RealRun, load_runs, run_server, run_workload

__all__ = [
    "RealRun",
    "ReplayResult",
    "error_table",
    "half_smape",
    "load_runs",
    "replay_runs",
    "run_server",
    "run_workload",
]
