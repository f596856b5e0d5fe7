"""Replicas advanced together in time, for routers that read the replicas' state.

Each replica is the single-GPU engine run in pieces (`engine.advance`): before a request whose
adapter several replicas hold is routed, those replicas run every step that starts before its
arrival, so their outstanding counts are exact at that instant. The engine starts a step only once
every arrival up to its start is known, so a replica run in pieces equals the same replica run in one
call with the requests it was sent (tests/twin/test_cluster.py checks it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from loratwin.twin import engine
from loratwin.twin.result import RunResult
from loratwin.twin.simulation import PreparedRun, finish_run, log_caps
from loratwin.workload import RequestTable

# the state arrays of each log, grown together when the engine reports it full
_LOG_ARRAYS = {
    engine.OVERFLOW_STEPS: ("step_end", "step_batch", "step_adapters", "step_kv_blocks", "step_prefill",
                            "step_context", "step_overhead"),
    engine.OVERFLOW_SEGMENTS: ("seg_req", "seg_a", "seg_b"),
    engine.OVERFLOW_GAPS: ("gap_req", "gap_ns"),
    engine.OVERFLOW_PREEMPT_STACK: ("pstack_req", "pstack_key"),
}
_REQUEST_FIELDS = ("arrival_ns", "req_adapter", "prompt_tokens", "output_tokens")


class ReplicaRun:
    """One replica whose requests arrive while it runs. `prepared` holds every request it could be
    sent (all of its adapters'), in time order: the cluster's requests `possible` (ascending); `add`
    sends it some of them, by their index in the cluster."""

    def __init__(self, prepared: PreparedRun, possible: np.ndarray) -> None:
        self.prepared = prepared
        self.possible = possible
        inputs = prepared.inputs
        n = len(inputs.arrival_ns)
        self._sent_arrays = {name: np.empty(n, getattr(inputs, name).dtype) for name in _REQUEST_FIELDS}
        self.inputs = inputs._replace(**self._sent_arrays)
        caps = log_caps(prepared.profile, prepared.duration_s, n, inputs.max_num_seqs)
        self.st, self.sc = engine.new_state(
            n, len(inputs.gpu_load_ns), inputs.cpu_preloaded, inputs.gpu_preloaded, inputs.max_num_seqs,
            inputs.num_blocks, inputs.duration_ns, inputs.sample_interval_ns, *caps.values(),
        )
        self.n_known = 0
        self._positions: list[np.ndarray] = []

    def add(self, requests: np.ndarray) -> None:
        """Send it these of the cluster's requests (ascending, after those sent so far)."""
        positions = np.searchsorted(self.possible, requests)
        k = len(positions)
        if k == 0:
            return
        for name, target in self._sent_arrays.items():
            target[self.n_known:self.n_known + k] = getattr(self.prepared.inputs, name)[positions]
        self.n_known += k
        self._positions.append(positions)

    def advance(self, until_ns: int, final: bool = False) -> None:
        """Run every step that starts before `until_ns` (to the window's end if `final`)."""
        sc = self.sc
        if not final and (sc[engine.SC_NOW] >= until_ns or (
                sc[engine.SC_NRUN] == 0 and sc[engine.SC_N_WAITING] == 0 and sc[engine.SC_NEXT_ARRIVAL] == self.n_known)):
            return  # already there, or idle with nothing new: the call would change nothing
        while True:
            engine.advance(*self.inputs, self.st, sc, self.n_known, until_ns, final)
            overflow = int(sc[engine.SC_OVERFLOW])
            if overflow == 0:
                return
            self._grow(overflow)

    def _grow(self, overflow: int) -> None:
        arrays = list(self.st)
        for name in _LOG_ARRAYS[overflow]:
            i = engine.STATE_ARRAYS.index(name)
            bigger = np.empty(2 * len(arrays[i]), arrays[i].dtype)
            bigger[:len(arrays[i])] = arrays[i]
            arrays[i] = bigger
        self.st = tuple(arrays)

    def outstanding(self, t_ns: int) -> int:
        """Requests sent to it and not finished at `t_ns` (after `advance(t_ns)`: only its last step
        can end later, and its finishes are not yet at `t_ns`)."""
        sc = self.sc
        finished = sc[engine.SC_N_FINISHED]
        if sc[engine.SC_LAST_END] > t_ns:
            finished -= sc[engine.SC_LAST_FINISHED]
        return self.n_known - int(finished)

    def sent_positions(self) -> np.ndarray:
        return np.concatenate(self._positions) if self._positions else np.empty(0, np.int64)

    def result(self, starvation_threshold: float) -> RunResult:
        """Its RunResult, over the requests it was sent (call after `advance(end, final=True)`)."""
        out = engine.EngineOutput(*engine.collect(self.st, self.sc))
        n = self.n_known
        out = out._replace(sent_ns=out.sent_ns[:n], first_ns=out.first_ns[:n], finish_ns=out.finish_ns[:n],
                           generated=out.generated[:n], preempted=out.preempted[:n])
        taken = self.sent_positions()
        requests = self.prepared.requests
        prepared = dataclasses.replace(
            self.prepared,
            requests=RequestTable(arrival_s=requests.arrival_s[taken], adapter=requests.adapter[taken],
                                  prompt_tokens=requests.prompt_tokens[taken], output_tokens=requests.output_tokens[taken]),
            requested_output_tokens=self.prepared.requested_output_tokens[taken],
        )
        return finish_run(prepared, out, starvation_threshold)


# (request, the replicas holding its adapter, outstanding count of a replica at the arrival) -> replica;
# a rule asks only for the counts it reads (affinity: the home's alone while it is below the threshold)
Decide = Callable[[int, list[int], Callable[[int], int]], int]


def run_lockstep(
    runs: list[ReplicaRun],
    routes: np.ndarray,
    arrival_ns: np.ndarray,
    adapter: np.ndarray,
    holders: list[list[int]],
    decide: Decide,
    duration_ns: int,
) -> np.ndarray:
    """Route and run: `routes[i]` >= 0 is a request's fixed replica (its adapter has one); -1 means
    `decide(i, holders[adapter[i]], outstanding)` picks it at its arrival. Returns the
    routes, every one filled."""
    routes = routes.copy()
    n_replicas = len(runs)
    fixed = [np.flatnonzero(routes == r) for r in range(n_replicas)]
    flushed = [0] * n_replicas  # how many of `fixed[r]` were sent

    def flush(r: int, before: int) -> None:
        upto = int(np.searchsorted(fixed[r], before))
        if upto > flushed[r]:
            runs[r].add(fixed[r][flushed[r]:upto])
            flushed[r] = upto

    for i in np.flatnonzero(routes < 0):
        t = int(arrival_ns[i])

        def outstanding(r: int, i: int = int(i), t: int = t) -> int:
            flush(r, i)
            runs[r].advance(t)
            return runs[r].outstanding(t)

        chosen = decide(int(i), holders[adapter[i]], outstanding)
        routes[i] = chosen
        runs[chosen].add(np.array([i], np.int64))
    for r in range(n_replicas):
        flush(r, len(routes))
        runs[r].advance(duration_ns, final=True)
    return routes
