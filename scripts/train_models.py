"""Regenerate the shipped models from scratch: twin sweeps, labels, training, for both built-in profiles.

    pip install -e '.[learn]'
    python scripts/train_models.py                 # everything (about 15-20 min per profile on 2 cores)
    python scripts/train_models.py --step sweep    # only the training data
    python scripts/train_models.py --step train    # only the models, from data already swept

Training data (git-ignored): data/sweeps/<profile>/, a resumable results store; rerunning resumes.
It is the built-in `paper` grid (served and max_loras in {16, ..., 384}, 120 rate triples x 7 rank
mixes, one simulated hour, seed 0, the reference client's queue cap) searched by bisection per
(workload, max_loras) frontier, on every third workload in grid order (--workloads 0:840:3: 280
workloads; every rate triple and every rank mix appears), and the full grid of every 42nd workload
(20 of those, so the throughput models see configurations far past starvation). The equivalent
commands:

    loratwin sweep paper --profile P --search --workloads 0:840:3 --out data/sweeps/P
    loratwin sweep paper --profile P --workloads 0:840:42 --out data/sweeps/P
    loratwin labels data/sweeps/P
    loratwin train data/sweeps/P --out src/loratwin/learn/models/P   (also tunes the P(starved) cut)

Shipped models: src/loratwin/learn/models/<profile>/ (manifest.json, one JSON per model, comparison.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("llama-3.1-8b-instruct", "qwen-2.5-7b-instruct")
WORKLOADS = slice(0, 840, 3)
# Every run of the grid for a few of those workloads: the search probes near the starvation
# frontiers only, and the throughput models also need configurations far past them.
FULL_WORKLOADS = slice(0, 840, 42)


def _guarded_search_plan() -> None:
    """A probe that finishes after its frontier was already decided by another probe must not be
    recorded into the workload's next frontier: drop it (it is stored all the same)."""
    from loratwin.sweep import execute, search

    class GuardedSearchPlan(search.SearchPlan):
        def record(self, record: dict[str, Any]) -> None:
            workload, index = self._in_flight.pop(record["config_key"])
            active = self._active.get(workload)
            if active is None or index >= len(active[1].runs) or active[1].runs[index].key != record["config_key"]:
                return
            active[1].record(index, search.is_starved(record, self.threshold))

    execute.SearchPlan = GuardedSearchPlan  # type: ignore[misc]


def sweep(profile: str) -> None:
    from loratwin.sweep.execute import run_sweep
    from loratwin.sweep.grid import expand, paper_grid
    from loratwin.sweep.labels import write_labels

    _guarded_search_plan()
    grid = paper_grid(profile)
    out = ROOT / "data" / "sweeps" / profile
    started = time.monotonic()
    summary = run_sweep(grid, out, source="paper", search=True, workload_slice=WORKLOADS,
                        expansion=expand(grid, "paper", workload_slice=WORKLOADS))
    print(f"{profile}: search: {summary.ran} runs now ({summary.already_done} reused, {summary.failed} failed), "
          f"{summary.workloads} workloads, {time.monotonic() - started:.0f} s", flush=True)
    full = run_sweep(grid, out, source="paper", workload_slice=FULL_WORKLOADS,
                     expansion=expand(grid, "paper", workload_slice=FULL_WORKLOADS))
    labels = write_labels(out)
    print(f"{profile}: full grid of {full.workloads} workloads: {full.ran} runs now ({full.already_done} reused); "
          f"{labels['runs']} runs stored, {full.store_bytes / 1e6:.1f} MB; {time.monotonic() - started:.0f} s in all",
          flush=True)


def train(profile: str) -> None:
    from loratwin.learn.train import train_profile
    from loratwin.learn.tune import tune_max_starved_p

    sweep_dir = ROOT / "data" / "sweeps" / profile
    models_dir = ROOT / "src" / "loratwin" / "learn" / "models" / profile
    manifest = train_profile(sweep_dir, models_dir, profile=profile, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"{profile}: trained in {manifest['train_s']} s; defaults {manifest['defaults']}", flush=True)
    margin = tune_max_starved_p(sweep_dir, models_dir, log=lambda m: print(m, file=sys.stderr, flush=True))
    # the acceptance rule refuses the learned estimator's predictions at P(starved) >= the cut
    print(f"{profile}: the learned estimator's cut: accepted while P(starved) < {margin['max_starved_p']}: "
          f"{margin['outcomes']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", choices=("all", "sweep", "train"), default="all")
    parser.add_argument("--profile", action="append", choices=PROFILES, help="default: both")
    args = parser.parse_args()
    for profile in args.profile or PROFILES:
        if args.step in ("all", "sweep"):
            sweep(profile)
        if args.step in ("all", "train"):
            train(profile)


if __name__ == "__main__":
    main()
