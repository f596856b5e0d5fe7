"""The router's rules: where one request goes.

`weighted-random` needs no state: every request's replica is drawn up front. The other two read the
replicas' outstanding requests (sent by the router, not finished) at the request's arrival, so the
replicas are simulated together (`lockstep`)."""

from __future__ import annotations

from collections.abc import Callable

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


def least_outstanding(candidates: list[int], outstanding: Callable[[int], int]) -> int:
    """The candidate with the fewest outstanding requests (`outstanding(replica)`); the first
    listed on ties."""
    best, best_count = candidates[0], outstanding(candidates[0])
    for r in candidates[1:]:
        count = outstanding(r)
        if count < best_count:
            best, best_count = r, count
    return best


def affinity(home: int, candidates: list[int], outstanding: Callable[[int], int], spill_threshold: int) -> int:
    """The home replica unless it has more than `spill_threshold` outstanding requests; then the
    least-outstanding other candidate (home again when it is the only one)."""
    if len(candidates) == 1 or outstanding(home) <= spill_threshold:
        return home
    return least_outstanding([r for r in candidates if r != home], outstanding)
