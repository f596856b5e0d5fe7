"""Search instead of brute force: find each (workload, max_loras) frontier without running every served count.

Starvation grows with the number of served adapters, so along one frontier (served ascending)
the runs are first not starved, then starved; the label is the last served count before the
first starved one. Two things cut the runs:

- bisection over the served counts of one frontier;
- a guess: the frontiers of one workload are searched in ascending max_loras and each starts from
  the previous one's answer, checking just the two counts around it (usually enough: the frontier
  moves little from one max_loras to the next), galloping outwards when it moved.

The runs chosen depend only on earlier results, never on timing, so a search is deterministic and
resumable: runs already in the store are reused, not rerun. Labels computed from the runs a search
made equal those of the full grid whenever starvation is indeed monotone in the served count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loratwin.sweep.grid import Expansion, RunConfig


def is_starved(record: Mapping[str, Any], threshold: float) -> bool | None:
    """True/False for a finished run, None for one that failed (no answer)."""
    if record.get("status") != "ok" or record.get("throughput_over_offered") is None:
        return None
    return 1.0 - float(record["throughput_over_offered"]) >= threshold


class FrontierSearch:
    """The first starved index k (0..n; n: none starved) among runs sorted by served count."""

    def __init__(self, runs: list[RunConfig], guess: int | None = None) -> None:
        self.runs = runs
        self.n = len(runs)
        self.guess = None if guess is None else min(max(guess, 0), self.n)
        self.known: dict[int, bool] = {}
        self.failed = False

    @property
    def hi(self) -> int:
        return min((i for i, starved in self.known.items() if starved), default=self.n)

    @property
    def lo(self) -> int:
        hi = self.hi
        return max((i + 1 for i, starved in self.known.items() if not starved and i < hi), default=0)

    @property
    def done(self) -> bool:
        return self.failed or self.lo >= self.hi

    @property
    def first_starved(self) -> int:
        return self.hi

    def frontier_served(self) -> int | None:
        """The label: the largest served count before the first starved one (None: starved at once)."""
        k = self.hi
        return self.runs[k - 1].served if k > 0 else None

    def record(self, index: int, starved: bool | None) -> None:
        if starved is None:
            self.failed = True
        else:
            self.known[index] = starved

    def probes(self) -> list[int]:
        """Indices to run next (possibly some already known or in flight: the caller skips those)."""
        if self.done:
            return []
        lo, hi = self.lo, self.hi
        g = self.guess
        if g is not None:
            if not self.known:
                return [i for i in (g - 1, g) if 0 <= i < self.n]
            # Galloping: the step doubles with each probe past the guess (1, 3, 7, ... away).
            if hi == self.n:
                past = sum(1 for i in self.known if i > g)
                return [min(self.n - 1, lo + (1 << past) - 1)]
            if lo == 0 and hi <= g - 1:
                past = sum(1 for i in self.known if i < g - 1)
                return [max(0, hi - (1 << past))]
        return [(lo + hi) // 2]


class SearchPlan:
    """Feeds the runs of all frontier searches to a runner, as results come back.

    `known` holds the records already in the store (config key -> status and
    throughput_over_offered); those runs are used without running them again.
    """

    def __init__(self, expansion: Expansion, known: Mapping[str, Mapping[str, Any]], threshold: float = 0.1) -> None:
        self.threshold = threshold
        self.known = known
        by_workload: dict[int, list[int]] = {}
        for workload_index, max_loras in expansion.frontiers:
            by_workload.setdefault(workload_index, []).append(max_loras)
        self._queues = {w: sorted(ml) for w, ml in by_workload.items()}
        self._frontiers = expansion.frontiers
        self.frontiers_total = len(expansion.frontiers)
        self.frontiers_done = 0
        self.reused = 0
        self._active: dict[int, tuple[int, FrontierSearch]] = {}  # workload -> (max_loras, its search)
        self._in_flight: dict[str, tuple[int, int]] = {}  # config key -> (workload, index)
        for w in self._queues:
            self._open_next(w, previous=None)

    def _open_next(self, workload: int, previous: FrontierSearch | None) -> None:
        queue = self._queues[workload]
        if not queue:
            self._active.pop(workload, None)
            return
        max_loras = queue.pop(0)
        runs = self._frontiers[(workload, max_loras)]
        guess = None
        if previous is not None and not previous.failed:
            served = previous.frontier_served()
            # the previous frontier's label, placed among this frontier's served counts
            guess = 0 if served is None else sum(r.served <= served for r in runs)
        self._active[workload] = (max_loras, FrontierSearch(runs, guess))

    def ready(self) -> list[RunConfig]:
        """Runs to start now; resolves runs already stored on the way.

        A frontier waits for all its running probes before it decides anything (the next probes,
        or that it is done): so which runs a search makes depends on results only, never on the
        order in which they come back.
        """
        out: list[RunConfig] = []
        busy = {workload for workload, _ in self._in_flight.values()}
        changed = True
        while changed:
            changed = False
            for workload in list(self._active):
                if workload in busy:
                    continue
                _, search = self._active[workload]
                if search.done:
                    self.frontiers_done += 1
                    self._open_next(workload, search)
                    changed = True
                    continue
                for index in search.probes():
                    config = search.runs[index]
                    if index in search.known:
                        continue
                    if config.key in self.known:
                        search.record(index, is_starved(self.known[config.key], self.threshold))
                        self.reused += 1
                        changed = True
                    else:
                        busy.add(workload)
                        self._in_flight[config.key] = (workload, index)
                        out.append(config)
        return out

    def record(self, record: Mapping[str, Any]) -> None:
        # a frontier is never left while it has runs in flight, so this is the search they belong to
        workload, index = self._in_flight.pop(record["config_key"])
        _, search = self._active[workload]
        search.record(index, is_starved(record, self.threshold))

    @property
    def finished(self) -> bool:
        return not self._active and not self._in_flight
