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
def _walk(times, keys, deltas, step_end, codes):
    """The label (XOR of the keys present) and the names listed after each step, from the events
    of requests joining (+1) and leaving (-1) each (adapter, waiting or running) ascending in time."""
    count = np.zeros(codes.size, np.int64)
    label = np.zeros(step_end.size, np.int64)
    listed = np.zeros(step_end.size, np.int64)
    current, names, j = 0, 0, 0
    for s in range(step_end.size):
        while j < times.size and times[j] <= step_end[s]:
            k = keys[j]
            before = count[k]
            count[k] = before + deltas[j]
            if before == 0 or count[k] == 0:  # the adapter enters or leaves this set
                current ^= codes[k]
                names += deltas[j]
            j += 1
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
    # in this order a request's own leaving never comes before its joining at the same time
    times = np.concatenate([sent[waits], first[runs], first[runs], finish[ends]])
    keys = np.concatenate([2 * adapter[waits], 2 * adapter[runs], 2 * adapter[runs] + 1, 2 * adapter[ends] + 1])
    deltas = np.concatenate([np.ones(int(waits.sum()), np.int64), -np.ones(int(runs.sum()), np.int64),
                             np.ones(int(runs.sum()), np.int64), -np.ones(int(ends.sum()), np.int64)])
    if times.size == 0:  # no request, no series
        zeros = np.zeros(step_end.size, np.int64)
        return LoraInfoSeries(zeros, zeros)
    order = np.argsort(times, kind="stable")
    codes = np.random.default_rng(KEY_STREAM).integers(1, 2**63 - 1, size=2 * max(n_adapters, 1), dtype=np.int64)
    label, listed = _walk(times[order], keys[order], deltas[order], step_end, codes)
    # the steps whose pair is new; the run starts with no series
    _, first_step = np.unique(label, return_index=True)
    new = np.zeros(step_end.size, bool)
    new[first_step] = True
    return LoraInfoSeries(np.cumsum(new), np.cumsum(np.where(new, listed, 0)))
