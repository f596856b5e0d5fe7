"""The router's rules: where one request goes.

`weighted-random` needs no state: every request's replica is drawn up front. The other two read the
replicas' outstanding requests (sent by the router, not finished) at the request's arrival, so the
replicas are simulated together (`lockstep`). The rules are compiled: the lockstep loop calls them."""

from __future__ import annotations

import numpy as np
from numba import njit

# the router's random stream is apart from the workload's (same seed, other stream)
ROUTER_STREAM = 0x5E7_0A7E
# the stateful rules as the compiled loop names them
LEAST_OUTSTANDING = 0
AFFINITY = 1


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


@njit(cache=True)
def least_outstanding(outstanding):
    """Position of the candidate with the fewest outstanding requests; the first on ties."""
    best = 0
    for k in range(1, outstanding.shape[0]):
        if outstanding[k] < outstanding[best]:
            best = k
    return best


@njit(cache=True)
def affinity_spills(home_outstanding, spill_threshold):
    """Affinity sends a request to its adapter's home replica unless the home has more than
    `spill_threshold` outstanding requests; then to the replica holding it with the fewest outstanding
    (home included: a request never spills to a replica busier than its home)."""
    return home_outstanding > spill_threshold
