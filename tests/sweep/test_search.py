"""Search: bisection with guesses finds every frontier, and gives the full grid's labels with fewer runs."""

from __future__ import annotations

import itertools
import random

import pyarrow.parquet as pq
import pytest

from loratwin.sweep.execute import run_sweep
from loratwin.sweep.grid import expand, grid_from_yaml
from loratwin.sweep.labels import write_labels
from loratwin.sweep.search import FrontierSearch, SearchPlan

from .conftest import SEARCH_GRID


class _Run:
    def __init__(self, served: int) -> None:
        self.served = served


def _search(n: int, k: int, guess: int | None) -> tuple[FrontierSearch, int]:
    """Run a search against a monotone frontier whose first starved index is k; count the runs."""
    search = FrontierSearch([_Run(8 * (i + 1)) for i in range(n)], guess)  # type: ignore[list-item]
    runs = 0
    for _ in range(4 * n + 4):
        if search.done:
            break
        for index in search.probes():
            if index not in search.known:
                runs += 1
                search.record(index, index >= k)
    assert search.done
    return search, runs


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 16])
def test_frontier_search_finds_every_frontier(n):
    for k, guess in itertools.product(range(n + 1), [None, *range(n + 1)]):
        search, runs = _search(n, k, guess)
        assert search.first_starved == k
        assert search.frontier_served() == (None if k == 0 else 8 * k)
        # bisection needs ceil(log2(n + 1)) runs; a right guess at most 2
        if guess is None:
            assert runs <= max(1, (n).bit_length())
        elif guess == k:
            assert runs <= 2
        else:
            assert runs <= 2 + 2 * (n).bit_length()


def test_frontier_search_stops_on_a_failed_run():
    search = FrontierSearch([_Run(8), _Run(16), _Run(24)])  # type: ignore[list-item]
    (index,) = search.probes()
    search.record(index, None)
    assert search.done and search.failed and search.probes() == []


def test_frontier_search_ends_when_starvation_is_not_monotone():
    # starved at index 2 but not at 3..5: bisection still ends, between a run that does not starve
    # and the next one that does (labels then differ from the full grid's: the documented limit)
    search = FrontierSearch([_Run(8 * (i + 1)) for i in range(8)])  # type: ignore[list-item]
    pattern = [False, False, True, False, False, False, True, True]
    runs = 0
    while not search.done:
        for index in search.probes():
            runs += 1
            search.record(index, pattern[index])
    assert runs <= 4
    k = search.first_starved
    assert pattern[k] and not pattern[k - 1]


def _oracle_limit(config) -> int:
    """A made-up frontier per (workload, max_loras): the largest served count that does not starve."""
    return 40 + 24 * config.workload.index + (8 if config.max_loras == 16 else 0)


def _search_with_results_in_random_order(expansion, seed: int) -> tuple[list[str], SearchPlan]:
    plan = SearchPlan(expansion, {}, threshold=0.1)
    rng = random.Random(seed)
    running, ran = plan.ready(), []
    while running:
        rng.shuffle(running)
        for _ in range(rng.randint(1, len(running))):
            config = running.pop()
            ran.append(config.key)
            ratio = 0.95 if config.served <= _oracle_limit(config) else 0.5
            plan.record({"config_key": config.key, "status": "ok", "throughput_over_offered": ratio})
        running += plan.ready()
    assert plan.finished and plan.frontiers_done == plan.frontiers_total
    return sorted(ran), plan


def test_the_runs_of_a_search_do_not_depend_on_the_order_results_come_back():
    expansion = expand(grid_from_yaml(SEARCH_GRID, "search.yaml"))
    first, _ = _search_with_results_in_random_order(expansion, 0)
    for seed in range(1, 8):
        assert _search_with_results_in_random_order(expansion, seed)[0] == first
    assert len(first) * 3 <= len(expansion.runs)
    # and a search that finds every run in the store runs nothing
    known = {key: {"status": "ok", "throughput_over_offered": 0.95} for key in first}
    by_key = {r.key: r for r in expansion.runs}
    for key in first:
        known[key]["throughput_over_offered"] = 0.95 if by_key[key].served <= _oracle_limit(by_key[key]) else 0.5
    resumed = SearchPlan(expansion, known, threshold=0.1)
    assert resumed.ready() == [] and resumed.finished and resumed.reused == len(first)


def test_search_gives_the_full_grid_labels_with_3x_fewer_runs(tmp_path):
    grid = grid_from_yaml(SEARCH_GRID, "search.yaml")
    full = run_sweep(grid, tmp_path / "full", workers=2)
    searched = run_sweep(grid, tmp_path / "search", workers=2, search=True)
    assert full.ran == full.configs == 88 and full.failed == 0
    assert searched.failed == 0
    assert searched.ran * 3 <= full.ran, (searched.ran, full.ran)

    full_labels = write_labels(tmp_path / "full")
    search_labels = write_labels(tmp_path / "search")
    assert search_labels["labels"] == full_labels["labels"]
    frontiers_full = pq.read_table(tmp_path / "full" / "labels" / "frontiers.parquet").drop(["runs"])
    frontiers_search = pq.read_table(tmp_path / "search" / "labels" / "frontiers.parquet").drop(["runs"])
    assert frontiers_search.equals(frontiers_full)
    # the grid has frontiers inside it, not only at its ends
    assert full_labels["frontier_status"]["found"] >= 4

    # a search over a store that holds the full grid reuses its runs and runs nothing
    again = run_sweep(grid, tmp_path / "full", workers=2, search=True)
    assert again.ran == 0 and again.already_done == searched.ran
