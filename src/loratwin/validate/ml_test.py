"""The real runs of the paper's ML test set (`runs.csv`, source_set ml_test, Llama): nine workload
groups, each measured on a grid of (served, max_loras), and the adapter pool each group's runs served.

A group is a rate triple and a rank cycle (run ids `rate_<r1-r2-r3>_size_<k1-k2-k3>`). A run with n
served adapters serves the first n of a pool cycling the group's rates from the highest down,
beside its rank cycle (adapter i: the (i mod 3)-th highest rate and the (i mod 3)-th rank); the run
ids, the rate counts and the aggregate rates agree. Used by scripts/prove_recommend.py and
scripts/prove_slo.py to score answers against runs they were never fitted on.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from loratwin.workload import AdapterSpec, WorkloadSpec

PROFILE = "llama-3.1-8b-instruct"
POOL = 384
THRESHOLD = 0.1
# The served and max_loras counts the groups were measured at (max_loras <= served); the sweep's
# published grid and the optimum models' answers use the same counts.
GRID_COUNTS = (16, 32, 64, 96, 128, 160, 192, 256, 320, 384)

Group = tuple[tuple[float, ...], tuple[int, ...]]


def load_groups(path: Path) -> dict[Group, list[dict[str, Any]]]:
    """Every Llama ml_test row (any status) as read from the CSV, by group: (rates from the highest
    down, rank cycle); groups in descending order."""
    groups: dict[Group, list[dict[str, Any]]] = defaultdict(list)
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["source_set"] != "ml_test" or row["model"] != PROFILE:
                continue
            rates = tuple(sorted((float(r) for r in row["rate_values"].split()), reverse=True))
            ranks = tuple(int(r) for r in row["adapter_rank_cycle"].split())
            groups[(rates, ranks)].append(row)
    return dict(sorted(groups.items(), key=lambda item: item[0], reverse=True))


def ok_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The measured runs of a group: served, max_loras, throughput and starvation by the published
    rule on the nominal offered load (1 - total_tok_s / approx_offered_tok_s >= 0.1), with the row."""
    out = []
    for row in rows:
        if row["status"] != "ok" or not row["total_tok_s"]:
            continue
        throughput, offered = float(row["total_tok_s"]), float(row["approx_offered_tok_s"])
        out.append({"served": int(row["served_adapters"]), "max_loras": int(row["max_loras"]),
                    "total_tok_s": throughput, "starved": 1.0 - throughput / offered >= THRESHOLD, "row": row})
    return out


def cycling_workload(rates: tuple[float, ...], ranks: tuple[int, ...], count: int = POOL) -> WorkloadSpec:
    """The real runs' pool: adapter i at the (i mod len)-th highest rate and the (i mod len)-th rank."""
    return WorkloadSpec(adapters=tuple(
        AdapterSpec(id=f"a{i:03d}", rank=ranks[i % len(ranks)], rate_req_s=rates[i % len(rates)]) for i in range(count)
    ))


def group_name(rates: tuple[float, ...], ranks: tuple[int, ...]) -> str:
    return "/".join(f"{r:g}" for r in rates) + " ranks " + "-".join(map(str, ranks))


def grid_point(served: int, max_loras: int) -> tuple[int, int] | None:
    """Where an answer (served, max_loras) is looked up among the measured runs: the largest grid
    served count <= `served` and the grid max_loras nearest `max_loras` (at most that count, as in
    the real runs; ties: the smaller); None below the grid."""
    below = [c for c in GRID_COUNTS if c <= served]
    if not below:
        return None
    count = max(below)
    slots = min((c for c in GRID_COUNTS if c <= count), key=lambda c: (abs(c - max_loras), c))
    return count, slots
