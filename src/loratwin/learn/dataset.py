"""Training tables from a sweep's results store: per-configuration rows and per-workload optimum rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.errors import InputError
from loratwin.learn.features import (
    CONFIG_FEATURES,
    WORKLOAD_FEATURES,
    AdapterMix,
    as_matrix,
    config_features,
    workload_features,
)
from loratwin.profiles import Profile, load_profile
from loratwin.slo import Slo
from loratwin.workload import ShareGPTLengths, reference_layout, zipf_layout

STARVATION_THRESHOLD = 0.1
# The optimum models answer for a candidate list this long: the largest served count of the paper grid.
POOL_ADAPTERS = 384


@dataclass
class Table:
    """A design matrix with its targets and the workload of each row (for grouped cross-validation)."""

    features: list[str]
    X: np.ndarray
    targets: dict[str, np.ndarray]
    groups: np.ndarray
    rows: list[dict[str, Any]] = field(default_factory=list)
    capacity_tok_s: float | None = None  # the cap on the offered load in throughput ratios

    def __len__(self) -> int:
        return len(self.X)


def profile_lengths(profile: Profile) -> tuple[float, float]:
    """Mean prompt and requested output tokens of the ShareGPT pool the profile's model sees."""
    return ShareGPTLengths().means(profile.tokenizer or profile.name)


def layout_mix(row: dict[str, Any], served: int, lengths: tuple[float, float]) -> AdapterMix:
    """The adapters of a stored run's workload at `served` adapters."""
    if row["layout"] == "zipf":
        spec = zipf_layout(served, row["zipf_total_rate_req_s"], row["zipf_exponent"], row["rank_levels"], row["seed"])
    else:
        spec = reference_layout(served, row["rate_levels"], row["rank_levels"], row["seed"])
    return AdapterMix(
        np.array([a.rate_req_s for a in spec.adapters]), np.array([a.rank for a in spec.adapters]), *lengths
    )


def capacity_reference(throughput: np.ndarray) -> float:
    """About the most one GPU delivers in these runs: the 99th percentile of throughput."""
    return float(np.percentile(throughput, 99)) if len(throughput) else 1.0


def config_table(results: list[dict[str, Any]], profile: Profile, threshold: float = STARVATION_THRESHOLD) -> Table:
    """One row per finished run: configuration features -> throughput, starvation.

    Throughput is learnt as a ratio to min(offered load, capacity reference): about 1 below
    saturation, and beyond it a function of the server flags rather than of the offered load, so
    a model stays sensible for loads far past anything it saw."""
    lengths = profile_lengths(profile)
    rows, feats = [], []
    for run in results:
        if run["status"] != "ok" or run["total_tok_s"] is None or run["throughput_over_offered"] is None:
            continue
        mix = layout_mix(run, run["served"], lengths)
        f = config_features(mix, run["max_loras"], run["max_lora_rank"])
        feats.append(f)
        rows.append(run)
    X = as_matrix(feats, CONFIG_FEATURES)
    throughput = np.array([r["total_tok_s"] for r in rows], dtype=np.float64)
    capacity = capacity_reference(throughput)
    offered = np.minimum(X[:, CONFIG_FEATURES.index("offered_tok_s")], capacity)
    starved = np.array([1.0 - r["throughput_over_offered"] >= threshold for r in rows], dtype=np.float64)
    return Table(
        features=list(CONFIG_FEATURES),
        X=X,
        targets={
            "total_tok_s": throughput,
            "throughput_ratio": np.where(offered > 0, throughput / np.maximum(offered, 1e-12), 1.0),
            "starved": starved,
        },
        groups=np.array([r["workload_key"] for r in rows]),
        rows=rows,
        capacity_tok_s=capacity,
    )


def optimum_table(labels: list[dict[str, Any]], profile: Profile, pool_adapters: int = POOL_ADAPTERS) -> Table:
    """One row per workload with a known optimum: pool features -> best served, best max_loras, throughput."""
    lengths = profile_lengths(profile)
    rows, feats = [], []
    for label in labels:
        if label["best_served"] is None:
            continue
        feats.append(workload_features(layout_mix(label, pool_adapters, lengths)))
        rows.append(label)
    return Table(
        features=list(WORKLOAD_FEATURES),
        X=as_matrix(feats, WORKLOAD_FEATURES),
        targets={
            "best_served": np.array([r["best_served"] for r in rows], dtype=np.float64),
            "best_max_loras": np.array([r["best_max_loras"] for r in rows], dtype=np.float64),
            "best_total_tok_s": np.array([r["best_total_tok_s"] for r in rows], dtype=np.float64),
        },
        groups=np.array([r["workload_key"] for r in rows]),
        rows=rows,
    )


def load_sweep(results_dir: str | Path, profile: str | Profile | None = None, threshold: float = STARVATION_THRESHOLD,
               slos: tuple[Slo, ...] = ()) -> tuple[Profile, list[dict[str, Any]], list[dict[str, Any]]]:
    """The profile, the finished runs and the optimum labels of a sweep (labels computed from the
    runs; under `slos`, the best point that neither starves nor breaks an SLO)."""
    from loratwin.sweep.labels import check_slo_metrics, compute_labels
    from loratwin.sweep.store import read_results

    results = read_results(results_dir)
    check_slo_metrics(results, slos, f"the runs in {results_dir}")
    _, labels = compute_labels(results, threshold, slos)
    runs = results.to_pylist()
    if profile is None:
        names = {r["profile"] for r in runs}
        if len(names) != 1:
            raise InputError(f"{results_dir}: expected runs of one profile, found {sorted(names)}")
        profile = names.pop()
    if isinstance(profile, str):
        profile = load_profile(profile)
    return profile, runs, labels.to_pylist()
