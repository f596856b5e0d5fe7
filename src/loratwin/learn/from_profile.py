"""Training data for a profile that has none: the sweep `loratwin train --profile` runs before training.

The built-in models were trained on a search of every third workload of the `paper` grid (280
workloads) and the full grid of every 42nd (scripts/train_models.py: about 15-20 min of sweep and
10 min of training per profile on 2 cores). A new profile gets a leaner version, sweep and training
within 20 minutes on 2 cores (benchmarks/train_new_profile.py: 14.8 min on a shared 2-core machine,
7 min by CPU time on 2 free cores, 1,843 runs of 140 workloads):

- the same grid (served and max_loras over the paper's ten counts, 120 rate triples x 7 rank mixes,
  an hour, the reference client's queue cap), searched by bisection per (workload, max_loras) on
  every SEARCH_STEP-th workload, and run whole on every FULL_STEP-th workload (configurations far
  past starvation, for the throughput model);
- the FAMILIES below instead of all seven (EBM, RuleFit and the forest/GBM references are left out:
  they take most of the training time).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from loratwin.sweep.execute import SweepProgress, SweepSummary, run_sweep
from loratwin.sweep.grid import GridSpec, expand, paper_grid

SEARCH_STEP = 6
FULL_STEP = 84
PAPER_WORKLOADS = 840
FAMILIES = ("tree", "figs", "linear")
# A profile's sweep, inside the folder its models are written to.
SWEEP_FOLDER = "sweep"


def profile_grid(profile: str) -> GridSpec:
    """The paper grid for `profile` (a built-in name or a profile YAML path)."""
    return paper_grid(profile)


def sweep_plan() -> list[tuple[str, slice, bool]]:
    """(what, workloads, search) of each sweep, in the order they run."""
    return [
        (f"search of every {SEARCH_STEP}th workload", slice(0, PAPER_WORKLOADS, SEARCH_STEP), True),
        (f"full grid of every {FULL_STEP}th workload", slice(0, PAPER_WORKLOADS, FULL_STEP), False),
    ]


def describe_sweep() -> dict[str, Any]:
    """What the training data is, for the models' manifest."""
    return {
        "grid": "paper",
        "sweeps": [{"what": what, "workloads": f"{w.start}:{w.stop}:{w.step}", "search": search}
                   for what, w, search in sweep_plan()],
    }


def sweep_profile(
    profile: str,
    out: str | Path,
    *,
    workers: int | None = None,
    on_start: Callable[[str], None] | None = None,
    on_progress: Callable[[SweepProgress], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> list[SweepSummary]:
    """Run (or resume) the sweeps of `sweep_plan` for `profile` into the results store `out`.
    An interrupt keeps every finished run (the store is resumable)."""
    grid = profile_grid(profile)
    summaries = []
    for what, workloads, search in sweep_plan():
        if on_start:
            on_start(what)
        expansion = expand(grid, "paper", workload_slice=workloads)
        summaries.append(run_sweep(grid, out, source="paper", search=search, workers=workers,
                                   expansion=expansion, on_progress=on_progress, on_warning=on_warning))
    return summaries
