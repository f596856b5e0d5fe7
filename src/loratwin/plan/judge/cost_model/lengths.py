"""The request-length moments the cost model works with, for a workload's length distribution."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from loratwin.plan.judge.cost_model.busy_periods import BatchStartBusyPeriods
from loratwin.workload import LengthSpec, ShareGPTLengths


@dataclass(frozen=True, eq=False)
class LengthMoments:
    prompt: float  # mean prompt tokens
    output_asked: float  # mean requested output tokens
    output: float  # mean generated output tokens
    context: float  # time-averaged KV tokens held by a decoding request
    # how much a wait lengthens an adapter's hold on its place (None: not at all)
    busy_periods: BatchStartBusyPeriods | None = field(default=None, repr=False)

    def locate(self, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.busy_periods is None else self.busy_periods.locate(rho)

    def batch_extra(self, located, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The busy period the requests that waited add, in units of the mean running time, and
        its derivative in μ = λW (see `loratwin.plan.judge.cost_model.busy_periods`)."""
        if self.busy_periods is None:
            return np.zeros_like(mu), np.zeros_like(mu)
        return self.busy_periods.extra(located, mu)


@functools.lru_cache(maxsize=32)
def length_moments(lengths: LengthSpec | ShareGPTLengths, model_name: str, output_ratio: float) -> LengthMoments:
    if isinstance(lengths, ShareGPTLengths):
        from loratwin.workload.length_tables import load_length_table, resolve_table

        prompts, outputs = load_length_table(resolve_table(lengths.table, model_name))
    else:
        from loratwin.workload.lengths import sample_lengths

        prompts, outputs = sample_lengths(lengths, 50_000, np.random.default_rng(0))
    p = prompts.astype(np.float64)
    o_asked = outputs.astype(np.float64)
    o = np.maximum(1.0, np.rint(o_asked * output_ratio))
    # a request holds p + k tokens after k outputs, one step per output: weight by output length
    context = float(np.mean(o * (p + o / 2)) / np.mean(o))
    return LengthMoments(float(p.mean()), float(o_asked.mean()), float(o.mean()), context,
                          BatchStartBusyPeriods(o + 1))
