"""The router's rules: where one request goes.

`weighted-random` needs no state: every request's replica is drawn up front. The other two read the
replicas' outstanding requests (sent by the router, not finished) at the request's arrival, so the
replicas are simulated together (`lockstep`)."""

from __future__ import annotations

import numpy as np

# the router's random stream is apart from the workload's (same seed, other stream)
ROUTER_STREAM = 0x5E7_0A7E


def weighted_routes(adapter: np.ndarray, weights: list[dict[int, float]], seed: int) -> np.ndarray:
    """Replica of every request (`adapter[i]`: its adapter's index), drawn by the adapter's weights,
    independently per request; the same seed gives the same routes."""
    rng = np.random.default_rng([seed, ROUTER_STREAM])
    draws = rng.random(len(adapter))
    routes = np.empty(len(adapter), np.int64)
    order = np.argsort(adapter, kind="stable")
    bounds = np.searchsorted(adapter[order], np.arange(len(weights) + 1))
    for a, table in enumerate(weights):
        idx = order[bounds[a]:bounds[a + 1]]
        replicas = np.array(sorted(table), np.int64)
        cumulative = np.cumsum([table[r] for r in replicas])
        cumulative[-1] = 1.0  # a draw in [0, 1) always lands on a replica
        routes[idx] = replicas[np.searchsorted(cumulative, draws[idx], side="right")]
    return routes


def least_outstanding(candidates: list[int], outstanding: list[int]) -> int:
    """The candidate with the fewest outstanding requests; the first listed on ties."""
    best = 0
    for k in range(1, len(candidates)):
        if outstanding[k] < outstanding[best]:
            best = k
    return candidates[best]


def affinity(home: int, candidates: list[int], outstanding: list[int], spill_threshold: int) -> int:
    """The home replica unless it has more than `spill_threshold` outstanding requests; then the
    least-outstanding other candidate (home again when it is the only one)."""
    k_home = candidates.index(home)
    if outstanding[k_home] <= spill_threshold or len(candidates) == 1:
        return home
    others = [k for k in range(len(candidates)) if k != k_home]
    return least_outstanding([candidates[k] for k in others], [outstanding[k] for k in others])
