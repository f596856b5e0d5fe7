"""The series of vLLM 0.8.5's `vllm:lora_requests_info` gauge, which make /metrics slower as a run goes on.

After every engine step the API server sets this gauge on the series labelled with the names of
the adapters that have running requests and of those that have waiting ones (in first-seen order,
so a set always gives the same label). A pair of sets not seen before adds a series, and no series
is ever removed. Rendering the page costs about the same per series and per adapter name listed in
the labels, so a scrape takes longer the more pairs the run has gone through (TailModel.scrape_ms;
fitted on the reference runs' poll periods by scripts/fit_tails.py).

Here a request waits from entering the server to its first token and runs from then to its last
(the twin does not log when it was first scheduled; one step earlier at most for a one-chunk
prompt), and preemptions are left out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

# the random keys that stand for "adapter i has waiting / running requests" (Zobrist hashing: the
# XOR of the keys present names a pair of sets); a stream of their own, the same for every run
KEY_STREAM = 0x10A1F0


class LoraInfoSeries(NamedTuple):
    """After each engine step: the gauge's series so far and the adapter names listed in them."""

    series: np.ndarray  # int64 per step
    names: np.ndarray  # int64 per step


@njit(cache=True)
def _walk(step_of, keys, deltas, n_steps, codes):
    """The label (XOR of the keys present) and the names listed after each step, from the events of
    requests joining (+1) and leaving (-1) each (adapter, waiting or running) set, `step_of` each
    event the first step ending at or after it. Events are taken step by step in their given order
    within a step (a counting sort): the sets after a step do not depend on the order, and a
    request's own joining is given before its leaving, so no count goes below 0."""
    starts = np.zeros(n_steps + 2, np.int64)
    for b in step_of:
        starts[b + 1] += 1
    for s in range(n_steps + 1):
        starts[s + 1] += starts[s]
    order = np.empty(step_of.size, np.int64)
    fill = starts.copy()
    for i in range(step_of.size):
        order[fill[step_of[i]]] = i
        fill[step_of[i]] += 1
    count = np.zeros(codes.size, np.int64)
    label = np.zeros(n_steps, np.int64)
    listed = np.zeros(n_steps, np.int64)
    current, names = 0, 0
    for s in range(n_steps):
        for j in range(starts[s], starts[s + 1]):
            i = order[j]
            k = keys[i]
            before = count[k]
            count[k] = before + deltas[i]
            if before == 0 or count[k] == 0:  # the adapter enters or leaves this set
                current ^= codes[k]
                names += deltas[i]
        label[s] = current
        listed[s] = names
    return label, listed


def lora_info_series(step_end_ns: np.ndarray, sent_ns: np.ndarray, first_ns: np.ndarray,
                     finish_ns: np.ndarray, adapter: np.ndarray, n_adapters: int) -> LoraInfoSeries:
    """The gauge's growth over a run, from each request's times (ns, -1: never) and adapter index."""
    step_end = np.asarray(step_end_ns, np.int64)
    sent, first, finish = (np.asarray(a, np.int64) for a in (sent_ns, first_ns, finish_ns))
    adapter = np.asarray(adapter, np.int64)
    waits, runs, ends = sent >= 0, (sent >= 0) & (first >= 0), (sent >= 0) & (first >= 0) & (finish >= 0)
    if not waits.any():  # no request sent, no series
        zeros = np.zeros(step_end.size, np.int64)
        return LoraInfoSeries(zeros, zeros)
    # in this order a request's own joining comes before its leaving
    keys = np.concatenate([2 * adapter[waits], 2 * adapter[runs], 2 * adapter[runs] + 1, 2 * adapter[ends] + 1])
    deltas = np.concatenate([np.ones(int(waits.sum()), np.int64), -np.ones(int(runs.sum()), np.int64),
                             np.ones(int(runs.sum()), np.int64), -np.ones(int(ends.sum()), np.int64)])
    # the first step ending at or after each event (step_end.size: after the last step)
    sent_step, first_step, finish_step = (np.searchsorted(step_end, t, side="left")
                                          for t in (sent[waits], first[runs], finish[ends]))
    step_of = np.concatenate([sent_step, first_step, first_step, finish_step])
    codes = np.random.default_rng(KEY_STREAM).integers(1, 2**63 - 1, size=2 * max(n_adapters, 1), dtype=np.int64)
    label, listed = _walk(step_of, keys, deltas, step_end.size, codes)
    # the steps whose pair is new; the run starts with no series
    _, first_seen = np.unique(label, return_index=True)
    new = np.zeros(step_end.size, bool)
    new[first_seen] = True
    return LoraInfoSeries(np.cumsum(new), np.cumsum(np.where(new, listed, 0)))
