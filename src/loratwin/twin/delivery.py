"""When the benchmark client sees a token: the engine's step end, unless the API server is busy.

The engine (twin.engine) says when each token is computed. The reference client measured when
it *received* it, and the two differ while the API server's event loop is blocked serving a
/metrics scrape (TailModel: the scrape lasts longer with more adapters served and more requests
running) or getting the tokenizer of an adapter on its first request (a first-use stall). Tokens computed during such a blackout are delivered together when it ends, each step's
as its own chunk right after the first (a long gap, then gaps of about nothing: the mean gap is
kept, as the real runs' mean ITL, about their mean TPOT, shows), and requests sent during it reach
the server when it ends. TTFT, TPOT and the inter-token gaps are taken on delivery times. The
engine's schedule (and so throughput) is unchanged: the engine core is a separate process and
keeps stepping.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from loratwin.twin.lora_info import LoraInfoSeries

NS_PER_MS = 1e6
# the random stream of the scrape lengths, apart from the workload's draws of the same seed
SCRAPE_STREAM = 0x5C4A9E


class Blackouts(NamedTuple):
    """Intervals [start_ns, end_ns) during which the client receives nothing, ascending."""

    start_ns: np.ndarray
    end_ns: np.ndarray

    @property
    def mean_ms(self) -> float:
        return float((self.end_ns - self.start_ns).mean() / NS_PER_MS) if self.start_ns.size else 0.0


NONE = Blackouts(np.empty(0, np.int64), np.empty(0, np.int64))


def scrape_blackouts(tails, step_end_ns: np.ndarray, step_batch: np.ndarray, served_adapters: int,
                     until_ns: int, seed: int = 0, lora_info: LoraInfoSeries | None = None) -> Blackouts:
    """The scrapes of a run up to `until_ns`: the first after one poll interval, each taking
    `tails.scrape_ms` with the requests running at its start and the LoRA-info gauge as the last
    step before it left it (`lora_info`, per step; None: no series) times a gamma factor of mean 1 and
    coefficient of variation `tails.metrics_scrape_cv` (drawn with `seed`; 1 when the cv is 0),
    blocking the server for its blocking share of that; the next one poll interval after it ends."""
    if not tails.scrape_on:
        return NONE
    interval = int(round(tails.metrics_poll_interval_s * 1e9))
    cv = float(tails.metrics_scrape_cv)
    rng = np.random.default_rng([int(seed), SCRAPE_STREAM])  # a stream of its own: arrivals are unchanged
    starts, ends = [], []
    t = interval
    while t < until_ns:
        k = int(np.searchsorted(step_end_ns, t, side="right"))
        running = int(step_batch[k]) if k < len(step_batch) else 0  # the step under way at t
        series = names = 0
        if lora_info is not None and k > 0:
            series, names = int(lora_info.series[k - 1]), int(lora_info.names[k - 1])
        factor = rng.gamma(1 / cv**2, cv**2) if cv > 0 else 1.0
        mean_ms = tails.scrape_ms(served_adapters, running, series, names)
        length = max(int(round(mean_ms * factor * NS_PER_MS)), 0)
        starts.append(t)
        ends.append(t + int(round(length * tails.metrics_scrape_blocking_share)))
        t += length + interval
    return Blackouts(np.asarray(starts, np.int64), np.asarray(ends, np.int64))


def delivered(times_ns: np.ndarray, blackouts: Blackouts) -> np.ndarray:
    """When the client receives what the engine produced at `times_ns` (negative: never, kept)."""
    t = np.asarray(times_ns, np.int64)
    if blackouts.start_ns.size == 0:
        return t
    k = np.searchsorted(blackouts.start_ns, t, side="right") - 1
    inside = (k >= 0) & (t >= 0)
    end = blackouts.end_ns[np.maximum(k, 0)]
    return np.where(inside & (t < end), end, t)


def first_use_blackouts(tails, sent_ns: np.ndarray, adapter: np.ndarray, after: Blackouts = NONE) -> Blackouts:
    """One stall of `tails.first_use_stall_ms` per adapter, from its first request's arrival at the
    server (sent_ns, held by `after`'s blackouts) or the end of the previous stall, whichever is
    later: the event loop serves one at a time."""
    if tails.first_use_stall_ms <= 0:
        return NONE
    sent = np.asarray(sent_ns, np.int64)
    ok = sent >= 0
    order = np.argsort(sent[ok], kind="stable")
    _, first = np.unique(np.asarray(adapter)[ok][order], return_index=True)
    arrivals = np.sort(delivered(sent[ok][order][first], after))
    length = int(round(tails.first_use_stall_ms * NS_PER_MS))
    starts = np.empty_like(arrivals)
    free = np.iinfo(np.int64).min
    for i, t in enumerate(arrivals):
        starts[i] = max(int(t), free)
        free = starts[i] + length
    return Blackouts(starts, starts + length)


def union(a: Blackouts, b: Blackouts) -> Blackouts:
    """The blackouts of both, overlapping ones merged, ascending."""
    if a.start_ns.size == 0 or b.start_ns.size == 0:
        return a if b.start_ns.size == 0 else b
    start = np.concatenate([a.start_ns, b.start_ns])
    end = np.concatenate([a.end_ns, b.end_ns])
    order = np.argsort(start, kind="stable")
    start, end = start[order], np.maximum.accumulate(end[order])
    # a new interval begins where the start passes every end before it
    new = np.ones(start.size, bool)
    new[1:] = start[1:] > end[:-1]
    group = np.cumsum(new) - 1
    merged_end = np.zeros(int(group[-1]) + 1, np.int64)
    np.maximum.at(merged_end, group, end)
    return Blackouts(start[new], merged_end)
