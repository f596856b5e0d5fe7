"""Replicas advanced together in time, for routers that read the replicas' state.

Each replica is the single-GPU engine run in pieces (`engine.advance`): before a request whose
adapter several replicas hold is routed, those replicas run every step that starts before its
arrival, so their outstanding counts are exact at that instant. The engine starts a step only once
every arrival up to its start is known, so a replica run in pieces equals the same replica run in one
call with the requests it was sent (tests/twin/test_cluster.py checks it). The loop over requests is
compiled (one call for the whole window, re-entered only to grow a full log)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from numba import njit
from numba.core.errors import NumbaPendingDeprecationWarning

from loratwin.twin import engine
from loratwin.twin.cluster.routing import AFFINITY, affinity_spills, least_outstanding
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
    sent (all of its adapters', in time order); the loop copies those it is sent into `inputs`."""

    def __init__(self, prepared: PreparedRun) -> None:
        self.prepared = prepared
        inputs = prepared.inputs
        n = len(inputs.arrival_ns)
        self.possible = tuple(getattr(inputs, name) for name in _REQUEST_FIELDS)
        self.inputs = inputs._replace(**{name: np.empty(n, getattr(inputs, name).dtype) for name in _REQUEST_FIELDS})
        caps = log_caps(prepared.profile, prepared.duration_s, n, inputs.max_num_seqs)
        self.st, self.sc = engine.new_state(
            n, len(inputs.gpu_load_ns), inputs.cpu_preloaded, inputs.gpu_preloaded, inputs.max_num_seqs,
            inputs.num_blocks, inputs.duration_ns, inputs.sample_interval_ns, *caps.values(),
        )
        self.taken = np.empty(n, np.int64)  # positions in `possible` of the requests sent, in order
        self.n_known = 0

    def grow(self) -> None:
        """Double the log the engine reported full."""
        arrays = list(self.st)
        for name in _LOG_ARRAYS[int(self.sc[engine.SC_OVERFLOW])]:
            i = engine.STATE_ARRAYS.index(name)
            bigger = np.empty(2 * len(arrays[i]), arrays[i].dtype)
            bigger[:len(arrays[i])] = arrays[i]
            arrays[i] = bigger
        self.st = tuple(arrays)

    def result(self, starvation_threshold: float) -> RunResult:
        """Its RunResult, over the requests it was sent (once the loop has run to the end)."""
        out = engine.EngineOutput(*engine.collect(self.st, self.sc))
        n = self.n_known
        out = out._replace(sent_ns=out.sent_ns[:n], first_ns=out.first_ns[:n], finish_ns=out.finish_ns[:n],
                           generated=out.generated[:n], preempted=out.preempted[:n])
        taken = self.taken[:n]
        requests = self.prepared.requests
        prepared = dataclasses.replace(
            self.prepared,
            requests=RequestTable(arrival_s=requests.arrival_s[taken], adapter=requests.adapter[taken],
                                  prompt_tokens=requests.prompt_tokens[taken], output_tokens=requests.output_tokens[taken]),
            requested_output_tokens=self.prepared.requested_output_tokens[taken],
        )
        return finish_run(prepared, out, starvation_threshold)


@njit(cache=True)
def _outstanding(sc, n_known, t_ns):
    """Requests sent to a replica and not finished at `t_ns`, after it ran to `t_ns`: only its last
    step can end later, and that step's finishes are not yet done at `t_ns`."""
    finished = sc[engine.SC_N_FINISHED]
    if sc[engine.SC_LAST_END] > t_ns:
        finished -= sc[engine.SC_LAST_FINISHED]
    return n_known - finished


@njit(cache=True)
def _advance(x, st, sc, n_known, until_ns, final):
    """engine.advance on a replica's inputs (an EngineInputs as a plain tuple)."""
    engine.advance(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11], x[12], x[13], x[14],
                   x[15], x[16], x[17], st, sc, n_known, until_ns, final)


@njit(cache=True)
def _send(k, i, inputs, possible, taken, n_known, cursor):
    """Request i (the next of replica k's possible ones at `cursor[k]`) is sent to replica k."""
    n = n_known[k]
    p = cursor[k]
    inputs[0][n] = possible[0][p]
    inputs[1][n] = possible[1][p]
    inputs[2][n] = possible[2][p]
    inputs[3][n] = possible[3][p]
    taken[n] = p
    n_known[k] = n + 1


@njit(cache=True)
def _loop(inputs_l, st_l, sc_l, possible_l, taken_l, n_known, cursor, start, arrival_ns, adapter, routes,
          holder_ptr, holder_idx, home, rule, spill_threshold, duration_ns):
    """Route requests start.. in order and run the replicas with them, then to the window's end.
    Returns (-1, -1) when done, or (request, replica) where a replica's log filled (grow it and call
    again from that request: nothing of it was done)."""
    n = arrival_ns.shape[0]
    counts = np.empty(holder_idx.shape[0], np.int64)  # outstanding requests of the replicas asked,
    order = np.empty(holder_idx.shape[0], np.int64)  # and which they are
    spills = False
    for i in range(start, n):
        a = adapter[i]
        lo = holder_ptr[a]
        hi = holder_ptr[a + 1]
        chosen = routes[i]
        if chosen < 0:
            t = arrival_ns[i]
            m = 0
            h = home[a]
            if rule == AFFINITY:
                # the home first; the other holders' counts only when it is above the threshold
                _advance(inputs_l[h], st_l[h], sc_l[h], n_known[h], t, False)
                if sc_l[h][engine.SC_OVERFLOW] != 0:
                    return i, h
                spills = affinity_spills(_outstanding(sc_l[h], n_known[h], t), spill_threshold)
                chosen = h
            for j in range(lo, hi):
                k = holder_idx[j]
                # spilling, the request goes to the holder with the fewest outstanding, home included:
                # it leaves home only for a replica less loaded than home
                if rule == AFFINITY and not spills:
                    continue
                _advance(inputs_l[k], st_l[k], sc_l[k], n_known[k], t, False)
                if sc_l[k][engine.SC_OVERFLOW] != 0:
                    return i, k
                counts[m] = _outstanding(sc_l[k], n_known[k], t)
                order[m] = k
                m += 1
            if m > 0:
                chosen = order[least_outstanding(counts[:m])]
            routes[i] = chosen
        for j in range(lo, hi):
            k = holder_idx[j]
            if k == chosen:
                _send(k, i, inputs_l[k], possible_l[k], taken_l[k], n_known, cursor)
            cursor[k] += 1
    for k in range(len(st_l)):
        _advance(inputs_l[k], st_l[k], sc_l[k], n_known[k], duration_ns, True)
        if sc_l[k][engine.SC_OVERFLOW] != 0:
            return n, k
    return -1, -1


def run_lockstep(runs: list[ReplicaRun], routes: np.ndarray, arrival_ns: np.ndarray, adapter: np.ndarray,
                 holders: list[list[int]], home: list[int], rule: int, spill_threshold: int, duration_ns: int) -> np.ndarray:
    """Route and run: `routes[i]` >= 0 is a request's fixed replica (its adapter has one); -1: the
    rule (routing.LEAST_OUTSTANDING or AFFINITY) picks among `holders[adapter[i]]` at its arrival.
    Every replica's `possible` requests are those of the adapters it holds. Returns the routes."""
    routes = routes.astype(np.int64).copy()
    holder_ptr = np.zeros(len(holders) + 1, np.int64)
    holder_ptr[1:] = np.cumsum([len(h) for h in holders])
    holder_idx = np.array([r for h in holders for r in h], np.int64)
    # plain lists (numba reflects them): a typed List compiles its methods in every process
    inputs_l = [tuple(r.inputs) for r in runs]
    sc_l = [r.sc for r in runs]
    possible_l = [r.possible for r in runs]
    taken_l = [r.taken for r in runs]
    st_l = [r.st for r in runs]
    n_known = np.zeros(len(runs), np.int64)
    cursor = np.zeros(len(runs), np.int64)
    start = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumbaPendingDeprecationWarning)
            stop, k = _loop(inputs_l, st_l, sc_l, possible_l, taken_l, n_known, cursor, start, arrival_ns,
                            adapter.astype(np.int64), routes, holder_ptr, holder_idx, np.asarray(home, np.int64), rule,
                            spill_threshold, duration_ns)
        if stop < 0:
            break
        runs[k].st = st_l[k]
        runs[k].grow()
        st_l[k] = runs[k].st
        sc_l[k][engine.SC_OVERFLOW] = 0
        start = stop
    for k, run in enumerate(runs):
        run.st, run.n_known = st_l[k], int(n_known[k])
    return routes
