"""Per-GPU checks for placement: serving these adapters on one GPU, which `max_loras` values fit in
memory, what throughput each gives and whether requests starve.

Placement only talks to the `GpuCheck` protocol, so the source of the answer is swappable:

- `CostModelCheck`: a steady-state queueing model of the twin built from the profile's own cost
  model (step time, KV capacity, adapter loads), its limits checked against twin runs. Microseconds
  to milliseconds per call: the default for large placements.
- `LearnedCheck`: the per-configuration models of `loratwin.learn` (throughput and a starvation
  classifier), when they ship for the profile.
- `TwinCheck`: simulates every candidate `max_loras` with the twin. Slow, exact up to the twin's
  fidelity: the reference, and what `verify_placement` uses.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.plan.busy_periods import BatchStartBusyPeriods
from loratwin.plan.wait_solver import solve_waits
from loratwin.profiles import Profile, load_profile
from loratwin.twin.config import (
    DEFAULT_MAX_NUM_BATCHED_TOKENS,
    DEFAULT_MAX_NUM_SEQS,
    REFERENCE_CLIENT_MAX_WAITING,
)
from loratwin.workload import (
    AdapterSpec,
    LengthSpec,
    PoissonArrival,
    ShareGPTLengths,
    WorkloadSpec,
)

STARVATION_THRESHOLD = 0.1
# max_loras values a check tries (plus the served count itself): dense where the choice matters.
SLOT_CANDIDATES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384)
# The twin check simulates fewer of them: each costs a run.
TWIN_SLOT_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384)
# The mean wait for a place in the batch a GPU may have: the starvation rule alone lets a GPU with
# many quiet adapters keep up while its requests wait minutes for their first token.
DEFAULT_MAX_WAIT_S = 60.0
# Predicted throughputs this close count as equal when choosing max_loras (then the lower risk wins).
THROUGHPUT_TIE = 0.005
# Waits beyond this are not solved for (every window refuses them): a year
MAX_WAIT_SOLVED_S = 3.2e7
# The queue for KV admission near capacity, as a share of a request's run time at KV use u (the
# running requests over what the cache holds): KV_QUEUE_SCALE exp(KV_QUEUE_STEEPNESS (u - 1)).
# Fitted on the twin by scripts/fit_kv_queue.py (320 shares, KV use 0.93-1): on 320 others the
# twin's mean TTFT over the prediction has median 1.00 at KV use 0.93-0.97 and 1.08 at 0.97-1
# (quartiles 0.4-1.9); below 0.9 the queue is under a second.
KV_QUEUE_SCALE = 0.71
KV_QUEUE_STEEPNESS = 33.4
# The highest KV use (and share of max_num_seqs and of the token budget) a GPU may run at. From
# there the twin's queue for KV admission does not settle: over 8 hours instead of 2 the mean TTFT
# grows on 25 of 27 shares at 0.95-1 (medians 12.6 -> 30 s at 0.95-0.97, 25 -> 77 s above), while
# below it drifts by seconds at most (0.93-0.95: 5 of 16 grow, medians 2.0 -> 4.2 s; below 0.93, 2
# of 77). The hour's window hides it. `python scripts/check_kv_stability.py` (120 shares, seed 11).
STABLE_UTILISATION = 0.95


@dataclass(frozen=True)
class SlotOption:
    """One `max_loras` value for a GPU's share: what the check predicts there.

    `starvation_risk` is in [0, 1]; its meaning depends on the check (the cost model: how close the
    busiest resource is to its starvation limit; the twin: the throughput shortfall over the
    starvation threshold; a learned classifier: its probability). `starved` is the check's verdict.
    """

    max_loras: int
    predicted_tok_s: float
    starved: bool
    starvation_risk: float
    wait_s: float = 0.0  # predicted mean wait of a request for a place in the batch (cost model)
    # the busiest resource over its limit, unbounded (> 1: starved), where the check has one
    pressure: float | None = None
    queue_s: float = 0.0  # predicted mean wait of every request for KV admission (cost model)
    kv_use: float | None = None  # running requests over what the KV cache holds (cost model)

    @property
    def strain(self) -> float:
        """The pressure where the check has one (capped at 1e6), else the risk, plus 1 when
        starved: above 1 exactly when the option starves. What a search between GPUs lowers."""
        if self.pressure is not None:
            return min(self.pressure, 1e6)
        return 1.0 + max(self.starvation_risk, 1e-6) if self.starved else min(self.starvation_risk, 1.0)


@dataclass(frozen=True)
class GpuVerdict:
    """A check's answer for one GPU's share of adapters: every `max_loras` that fits in memory."""

    served: int
    max_lora_rank: int | None
    offered_tok_s: float
    options: tuple[SlotOption, ...]
    reason: str = ""  # why no option fits in memory, when `options` is empty

    @functools.cached_property
    def best(self) -> SlotOption | None:
        """The non-starved option with the highest predicted throughput (near-ties: the lowest risk,
        then the fewest slots); None when every option starves or none fits."""
        safe = [o for o in self.options if not o.starved]
        if not safe:
            return None
        top = max(o.predicted_tok_s for o in safe)
        close = [o for o in safe if o.predicted_tok_s >= top * (1 - THROUGHPUT_TIE)]
        return min(close, key=lambda o: (round(o.starvation_risk, 3), o.max_loras))

    @property
    def ok(self) -> bool:
        return self.best is not None

    @property
    def strain(self) -> float:
        """The least strain over the options: at most 1 when some option is accepted."""
        return min((o.strain for o in self.options), default=1e6)

    def fallback(self) -> SlotOption | None:
        """The option to run when all starve: the least strained (closest to its limits), then
        the highest predicted throughput. Throughput alone cannot choose: a starved share's
        predicted throughput is often its capacity at every max_loras, and the first of equals
        would be max_loras 1, the most starved."""
        if not self.options:
            return None
        return min(self.options, key=lambda o: (o.strain, -o.predicted_tok_s, o.max_loras))


@runtime_checkable
class GpuCheck(Protocol):
    """Anything that can judge one GPU's share of adapters."""

    name: str

    def evaluate(self, adapters: Sequence[AdapterSpec], profile: Profile) -> GpuVerdict: ...


def supported_ranks(profile: Profile) -> list[int]:
    """max_lora_rank values the profile can price (KV capacity and adapter loads both measured)."""
    return sorted(set(profile.kv.capacity_tokens) & set(profile.adapter_load.cpu_to_gpu_ms))


def server_rank(profile: Profile, adapter_ranks: Sequence[int]) -> int | None:
    """The smallest max_lora_rank the profile knows that admits every rank given; None if none does."""
    need = max(adapter_ranks)
    fitting = [r for r in supported_ranks(profile) if r >= need]
    return fitting[0] if fitting else None


def slot_candidates(profile: Profile, max_lora_rank: int, served: int, grid: Sequence[int]) -> list[int]:
    """Candidate max_loras values below the served count, the served count itself, up to what the
    profile measured; a server never needs more slots than adapters."""
    measured = max(profile.kv.capacity_tokens[max_lora_rank])
    values = sorted({s for s in grid if s < served} | {served})
    return [s for s in values if s <= measured]


def kv_tokens_or_none(profile: Profile, max_loras: int, max_lora_rank: int) -> int | None:
    try:
        return profile.kv.tokens(max_loras, max_lora_rank)
    except (InfeasibleConfigError, InputError):
        return None


def _no_rank_reason(profile: Profile, ranks: Sequence[int]) -> str:
    return (
        f"rank {max(ranks)} is above every max_lora_rank the profile "
        f"{profile.name} knows ({', '.join(map(str, supported_ranks(profile)))})"
    )


def adapter_server_rank(profile: Profile, adapter: AdapterSpec) -> int:
    """The least max_lora_rank that serves this adapter; an InputError naming it when none does."""
    rank = server_rank(profile, [adapter.rank])
    if rank is None:
        raise InputError(f"adapter {adapter.id!r}: {_no_rank_reason(profile, [adapter.rank])}")
    return rank


def startable_slots(profile: Profile, ranks: Sequence[int], served: int,
                    grid: Sequence[int]) -> tuple[int | None, list[tuple[int, int]], str]:
    """What every check starts from: the server's max_lora_rank for these adapter ranks, the
    candidate max_loras that start with it and their KV tokens, and why none does ("" when some do)."""
    max_rank = server_rank(profile, ranks)
    if max_rank is None:
        return None, [], _no_rank_reason(profile, ranks)
    slots = [(s, tokens) for s in slot_candidates(profile, max_rank, served, grid)
             if (tokens := kv_tokens_or_none(profile, s, max_rank)) is not None]
    return max_rank, slots, "" if slots else f"no max_loras value starts with max_lora_rank {max_rank}"


def _resolve(profile: Profile | str) -> Profile:
    return load_profile(profile) if isinstance(profile, str) else profile


# --- the cost-model check ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _LengthMoments:
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
        its derivative in μ = λW (see `loratwin.plan.busy_periods`)."""
        if self.busy_periods is None:
            return np.zeros_like(mu), np.zeros_like(mu)
        return self.busy_periods.extra(located, mu)


@functools.lru_cache(maxsize=32)
def _length_moments(lengths: LengthSpec | ShareGPTLengths, model_name: str, output_ratio: float) -> _LengthMoments:
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
    return _LengthMoments(float(p.mean()), float(o_asked.mean()), float(o.mean()), context,
                          BatchStartBusyPeriods(o + 1))


def kv_queue_share(kv_use: np.ndarray | float) -> np.ndarray | float:
    """The mean wait for KV admission as a share of a request's run time, at KV use <= 1 (see
    KV_QUEUE_SCALE)."""
    return KV_QUEUE_SCALE * np.exp(KV_QUEUE_STEEPNESS * (np.asarray(kv_use) - 1.0))


class CostModelCheck:
    """Steady state of the twin's engine loop, solved from the profile's cost model.

    With arrivals at Λ req/s and a step time τ, about N = Λ (O + 1) τ requests run (Little's law);
    τ itself grows with N (per-sequence, prefill, context and LoRA terms), with the adapters in the
    running batch and with adapter loads when slots are fewer than adapters. An adapter holds one
    of the max_loras places in the batch for a busy period of its requests; when the busy
    adapters outnumber the places, the others' requests wait W for a place (see `_slot_state`),
    and what arrives in the last W + T of a window of `window_s` seconds does not finish inside it.
    The fixed point gives N, τ, the adapters in the batch and W. A share starves when N does not
    fit the KV cache (or the token budget, or max_num_seqs) within `util_limit` of it (0.95: beyond,
    the queue for KV admission grows for as long as the load lasts; `STABLE_UTILISATION`), when the
    late share (W + T) / window_s exceeds `max_late_share` (half the 10% starvation threshold), when
    loading adapters takes more than `max_load_share` of the time, or when W, or the queue every
    request meets for KV admission as the batch nears its KV capacity (`kv_queue_share`), exceeds
    `max_wait_s` (a minute by default; None for no limit): a latency guard the starvation rule does
    not have.
    Arrivals are taken as Poisson at each adapter's rate; burstier processes need the twin check.
    `python scripts/check_cost_model.py` compares it with the twin on random shares.
    """

    name = "cost-model"

    def __init__(
        self,
        lengths: LengthSpec | ShareGPTLengths | None = None,
        *,
        util_limit: float = STABLE_UTILISATION,
        window_s: float = 3600.0,
        max_late_share: float = 0.05,
        max_wait_s: float | None = DEFAULT_MAX_WAIT_S,
        max_load_share: float = 0.5,
        max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
        max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS,
        slot_grid: Sequence[int] = SLOT_CANDIDATES,
    ) -> None:
        self.lengths = lengths if lengths is not None else ShareGPTLengths()
        self.util_limit = util_limit
        self.window_s = window_s
        self.max_late_share = max_late_share
        self.max_wait_s = max_wait_s
        self.max_load_share = max_load_share
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.slot_grid = tuple(slot_grid)

    def moments(self, profile: Profile) -> _LengthMoments:
        return _length_moments(self.lengths, profile.tokenizer or profile.name, profile.generation.output_tokens_ratio)

    def offered_tok_s(self, adapters: Sequence[AdapterSpec], profile: Profile) -> float:
        m = self.moments(profile)
        return sum(a.rate_req_s for a in adapters) * (m.prompt + m.output_asked)

    def evaluate(self, adapters: Sequence[AdapterSpec], profile: Profile) -> GpuVerdict:
        profile = _resolve(profile)
        rates = np.fromiter((a.rate_req_s for a in adapters), np.float64, len(adapters))
        ranks = [a.rank for a in adapters]
        return self.evaluate_arrays(rates, ranks, profile)

    def evaluate_arrays(self, rates: np.ndarray, ranks: Sequence[int], profile: Profile) -> GpuVerdict:
        m = self.moments(profile)
        total_rate = float(rates.sum())
        offered = total_rate * (m.prompt + m.output_asked)
        served = len(rates)
        max_rank, startable, reason = startable_slots(profile, ranks, served, self.slot_grid)
        if not startable:
            return GpuVerdict(served, max_rank, offered, (), reason)
        slots = [s for s, _ in startable]
        S = np.asarray(slots, np.float64)
        n_kv = np.asarray([t for _, t in startable], np.float64) / (m.context + profile.kv.block_size / 2)
        n_cap = np.minimum(n_kv, self.max_num_seqs)
        load_ms = float(np.mean([profile.adapter_load.cpu_to_gpu(max_rank, r) for r in ranks]))
        tau, running, _, wait, load_share = self._fixed_point(rates, S, n_cap, max_rank, load_ms, profile, m)
        with np.errstate(invalid="ignore", over="ignore"):
            prefill_per_step = total_rate * m.prompt * tau / 1000
            kv_use = np.where(np.isfinite(running), running / n_kv, np.inf)
            util = np.maximum.reduce([
                kv_use,
                running / self.max_num_seqs,
                (running + prefill_per_step) / self.max_num_batched_tokens,
            ])
        util = np.where(np.isfinite(util), util, np.inf)
        # requests that wait for a place in the batch finish late: what arrives in the last W + T
        # of a window is not served inside it
        run_s = (m.output + 1) * tau / 1000
        with np.errstate(invalid="ignore"):
            late_share = np.where(wait > 0, (wait + run_s) / self.window_s, 0.0)
        # near capacity every request queues for KV; past the util limit the queue never settles
        # and the GPU is refused (the queue is taken at its value at capacity beyond 1, so that
        # strain still measures the excess)
        queue = run_s * kv_queue_share(np.minimum(kv_use, 1.0))
        served_tok_s = total_rate * (m.prompt + m.output)
        capacity = self._capacity(rates, S, n_cap, max_rank, load_ms, profile, m)
        predicted = np.where(util <= 1.0, served_tok_s, np.minimum(served_tok_s, capacity))
        with np.errstate(invalid="ignore"):  # an infinite share over a limit of inf: refused below
            limits = [util / self.util_limit, late_share / self.max_late_share, load_share / self.max_load_share]
        if self.max_wait_s is not None:
            with np.errstate(divide="ignore", invalid="ignore"):  # a limit of 0 or inf, an infinite wait
                limits.append(np.where(wait > 0, wait / self.max_wait_s, 0.0))
                limits.append(np.where(queue > 0, queue / self.max_wait_s, 0.0))
        pressure = np.maximum.reduce(limits)
        pressure = np.where(np.isfinite(pressure), pressure, np.inf)
        options = tuple(
            SlotOption(int(s), float(p), bool(pr > 1.0), float(min(1.0, pr)), float(w), float(pr), float(q), float(u))
            for s, p, pr, w, q, u in zip(slots, predicted, pressure, wait, queue, kv_use)
        )
        return GpuVerdict(served, max_rank, offered, options)

    def step_ms(self, running, prefill_tokens, busy, S, max_rank, profile, m) -> np.ndarray:
        """The profile's step time (ms) with `running` requests, `prefill_tokens` per step and
        `busy` adapters in the batch, for max_loras S (vectors, as the twin's engine prices a step)."""
        st, so = profile.step_time, profile.scheduler_overhead
        base = (st.base_ms + st.per_seq_ms * running + st.per_prefill_token_ms * prefill_tokens
                + st.per_context_token_ms * running * m.context)
        active = np.minimum(S, busy)
        compute = (base * (st.lora_factor_base + st.lora_factor_per_adapter * active)
                   + st.lora_step_ms + st.lora_per_rank_ms * max_rank + st.lora_per_slot_ms * S
                   + st.lora_per_adapter_ms * active + st.lora_per_seq_per_slot_ms * running * S)
        overhead = np.maximum(0.0, so.intercept_ms + so.per_running_ms * running)
        return compute + overhead

    def _fixed_point(self, rates, S, n_cap, max_rank, load_ms, profile, m, accelerate=True):
        """Step time τ, running requests, adapters in a step, the mean wait for a slot and the
        share of time spent loading adapters, for every max_loras in S (vectors over S).
        `accelerate=False` iterates plainly (the secant steps only make it converge sooner)."""
        total_rate = float(rates.sum())
        served = len(rates)
        # adapters of equal rate behave alike: work on the distinct rates, weighted by their counts
        values, counts = np.unique(rates[rates > 0], return_counts=True)
        counts = counts.astype(np.float64)
        miss = np.where(served > S, 1.0 - S / served, 0.0)
        tau = np.full(len(S), profile.step_time.base_ms)
        wait = np.zeros(len(S))
        diverged = np.zeros(len(S), bool)
        live = np.ones(len(S), bool)  # columns still moving: only they are recomputed
        prev_tau = np.full(len(S), np.nan)  # the last iterate and its image, for the secant step
        prev_image = np.full(len(S), np.nan)
        jumped = np.zeros(len(S), bool)  # the iterate came from a secant step
        reach = np.ones(len(S))  # share of the secant step taken: halved when one overshoots
        for _ in range(80):
            c = np.flatnonzero(live)
            state = self._slot_state(values, counts, tau[c], S[c], m, wait[c])
            running = total_rate * state["run_s"]
            step = self.step_ms(running, total_rate * m.prompt * tau[c] / 1000, state["active"], S[c], max_rank, profile, m)
            # each slot visit of an adapter evicted since its last one pays a CPU->GPU load
            load_share = state["visits"] * miss[c] * load_ms / 1000
            new_tau = np.where(load_share < 1, step / np.maximum(1e-9, 1 - load_share), np.inf)
            blown = ~np.isfinite(new_tau) | (running > 4 * n_cap[c]) | ~np.isfinite(state["wait"])
            # a secant step past the fixed point into divergence is undone, not believed
            undo = blown & jumped[c]
            reach[c] = np.where(undo, reach[c] / 2, reach[c])
            diverged[c] |= blown & ~undo
            wait[c] = np.where(undo, wait[c], state["wait"])
            new_tau = np.where(undo, prev_image[c], np.where(diverged[c], tau[c], new_tau))
            live[c] = undo | (~diverged[c] & (np.abs(new_tau - tau[c]) > 1e-5 * tau[c]))
            # near saturation the plain iteration τ <- f(τ) crawls (f' close to 1): jump along
            # the secant of f where its slope says the step is safe
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = (new_tau - prev_image[c]) / (tau[c] - prev_tau[c])
                jump = new_tau + reach[c] * (new_tau - tau[c]) * slope / (1 - slope)
            use = accelerate & live[c] & ~undo & np.isfinite(slope) & (slope > -0.9) & (slope < 0.999) & (jump > 0)
            prev_tau[c] = np.where(undo, np.nan, tau[c])
            prev_image[c] = np.where(undo, np.nan, new_tau)
            jumped[c] = use
            tau[c] = np.where(use, jump, new_tau)
            if not live.any():
                break
        state = self._slot_state(values, counts, tau, S, m, wait)
        running = np.where(diverged, np.inf, total_rate * state["run_s"])
        load_share = np.where(diverged, np.inf, state["visits"] * miss * load_ms / 1000)
        wait = np.where(diverged, np.inf, state["wait"])
        return tau, running, state["active"], wait, load_share

    @staticmethod
    def _slot_state(values, counts, tau, S, m, wait_start):
        """Adapters in the running batch and the mean wait for a place among them.

        An adapter holds a place in the batch (one of max_loras) from the admission of its first
        request until none of its requests runs: a busy period of an M/G/inf queue, mean
        B1 = (exp(λ T) - 1) / λ with T the running time of a request. Then it is idle (mean 1/λ)
        until its next request, which waits W when all places are taken. The requests that arrived
        meanwhile (Poisson, mean λW) are admitted with it, so the busy period starts with all of
        them: B = B1 + T e(λT, λW) (`loratwin.plan.busy_periods`, exact for M/G/inf). Its share of
        the time holding a place is u = B / (1/λ + W + B). W = 0 when sum u <= max_loras;
        otherwise W solves sum u(W) = max_loras (the places are always full).
        """
        run_s = (m.output + 1) * tau / 1000
        if len(values) == 0:
            zero = np.zeros(len(S))
            return {"run_s": run_s, "active": zero, "visits": zero, "wait": zero}
        x = np.minimum(np.outer(values, run_s), 700.0)
        single = np.expm1(x) / values[:, None]
        idle = (1.0 / values)[:, None]
        located = m.locate(x)

        saturated = counts @ (single / (idle + single)) > S
        wait = np.zeros(len(S))
        if saturated.any():
            cols = np.flatnonzero(saturated)
            where = None if located is None else (located[0][:, cols], located[1][:, cols])
            wait[cols] = CostModelCheck._solve_wait(values, counts, single[:, cols], run_s[cols], S[cols], m,
                                                    wait_start[cols], where)
        held = single + run_s[None, :] * m.batch_extra(located, np.outer(values, wait))[0]
        cycle = idle + wait[None, :] + held
        active = np.minimum(S, counts @ (held / cycle))
        visits = counts @ (1.0 / cycle)
        return {"run_s": run_s, "active": active, "visits": visits, "wait": wait}

    @staticmethod
    def _solve_wait(values, counts, single, run_s, S, m, wait_start, located):
        """W with sum u(W) = S (u decreasing in W, above S at W = 0): safeguarded Newton in a
        bracket that starts from the previous fixed-point iterate (`loratwin.plan.wait_solver`)."""
        if located is None:  # no busy-period table: a wait adds nothing to the busy period
            flat, mu, inverse_width, columns = np.zeros(2), np.zeros(2), np.ones(1), 2
            offsets, ups = np.zeros(single.shape, np.int64), np.zeros(single.shape)
        else:
            flat, mu, inverse_width, columns = m.busy_periods.lookup_arrays()
            offsets, ups = np.ascontiguousarray(located[0]), np.ascontiguousarray(located[1], dtype=np.float64)
        return solve_waits(values.astype(np.float64), counts, np.ascontiguousarray(single), run_s.astype(np.float64),
                           S.astype(np.float64), wait_start.astype(np.float64), MAX_WAIT_SOLVED_S,
                           located is not None, flat, mu, inverse_width, columns, offsets, ups)

    def _capacity(self, rates, S, n_cap, max_rank, load_ms, profile, m) -> np.ndarray:
        """Token throughput with the KV cache (or another limit) full: n_cap requests running."""
        running = np.minimum(n_cap, self.max_num_batched_tokens * (m.output + 1) / (m.output + 1 + m.prompt))
        prefill = running * m.prompt / (m.output + 1)
        busy = np.minimum(S, float(len(rates)))
        step = self.step_ms(running, prefill, busy, S, max_rank, profile, m)
        return running / ((m.output + 1) * step / 1000) * (m.prompt + m.output)


    def lower_bound_gpus(self, adapters: Sequence[AdapterSpec], profile: Profile) -> float:
        """A fractional lower bound on the GPUs of any placement this check accepts (see
        `loratwin.plan.place_bound`)."""
        from loratwin.plan.place_bound import cost_model_lower_bound

        profile = _resolve(profile)
        need = np.array([adapter_server_rank(profile, a) for a in adapters], np.float64)
        rates = np.fromiter((a.rate_req_s for a in adapters), np.float64, len(adapters))
        return cost_model_lower_bound(self, rates, need, profile)


# --- the twin check -------------------------------------------------------------------------


@dataclass
class TwinCheck:
    """Simulate every candidate max_loras with the twin (`duration_s` per run, the reference
    client's queue cap, a fixed seed); results cached by the multiset of adapters.

    An option starves when the GPU falls short of the starvation rule, or, with `max_wait_s` (None:
    no limit), when requests wait longer than that on average for their first token: those that
    find their adapter idle (the wait for a place in the batch the cost model predicts) or all of
    them (a batch that outgrows the KV cache queues every request, and the queue grows for as long
    as the load lasts while the throughput rule, over a finite window, still passes). `place` runs
    it over the same window as `--verify`: shorter runs miss the requests that wait longest. (The
    per-adapter rule is left out: over short windows it flags waits well under a minute.)"""

    duration_s: float = 600.0
    seed: int = 0
    client_max_waiting: int | None = REFERENCE_CLIENT_MAX_WAITING
    lengths: LengthSpec | ShareGPTLengths = field(default_factory=ShareGPTLengths)
    arrival: object = field(default_factory=PoissonArrival)
    slot_grid: Sequence[int] = TWIN_SLOT_CANDIDATES
    starvation_threshold: float = STARVATION_THRESHOLD
    max_wait_s: float | None = DEFAULT_MAX_WAIT_S
    name: str = "twin"
    simulations: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    def evaluate(self, adapters: Sequence[AdapterSpec], profile: Profile) -> GpuVerdict:
        from loratwin.twin import ServerConfig, simulate

        profile = _resolve(profile)
        ordered = tuple(sorted(adapters, key=_adapter_sort_key))
        key = (profile.name, profile.model_dump_json(), tuple(_adapter_key(a) for a in ordered))
        if key in self._cache:
            return self._cache[key]
        served = len(ordered)
        max_rank, startable, reason = startable_slots(profile, [a.rank for a in ordered], served, self.slot_grid)
        if not startable:
            self._cache[key] = GpuVerdict(served, max_rank, 0.0, (), reason)
            return self._cache[key]
        # ids are renamed so that equal multisets simulate identically
        workload = WorkloadSpec(
            adapters=tuple(a.model_copy(update={"id": f"a{i}"}) for i, a in enumerate(ordered)),
            lengths=self.lengths,
            arrival=self.arrival,
        )
        options, offered = [], 0.0
        for s, _ in startable:
            server = ServerConfig(max_loras=s, max_cpu_loras=served, max_lora_rank=max_rank,
                                  client_max_waiting=self.client_max_waiting)
            result = simulate(workload, server, profile, duration_s=self.duration_s, seed=self.seed,
                              starvation_threshold=self.starvation_threshold)
            self.simulations += 1
            offered = float(result.summary["offered_tok_s"])
            shortfall = 1.0 - float(result.summary["throughput_over_offered"])
            risk = shortfall / self.starvation_threshold
            if self.max_wait_s is not None:
                risk = max(risk, _over_limit(result.first_token_wait_s or 0.0, self.max_wait_s))
            starved = result.starved or risk > 1.0
            options.append(SlotOption(s, result.total_tok_s, starved, float(min(1.0, max(0.0, risk))),
                                      result.idle_start_ttft_s or 0.0))
        verdict = GpuVerdict(served, max_rank, offered, tuple(options))
        self._cache[key] = verdict
        return verdict


def _adapter_sort_key(a: AdapterSpec) -> tuple:
    return (a.rank, a.rate_req_s, _arrival_json(a))


def _adapter_key(a: AdapterSpec) -> tuple:
    return (a.rank, a.rate_req_s, _arrival_json(a))


def _arrival_json(a: AdapterSpec) -> str:
    return "" if a.arrival is None else json.dumps(a.arrival.model_dump(), sort_keys=True)


# --- the learned check ------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnedModels:
    """loratwin.learn's per-configuration models of one profile: throughput and starvation."""

    throughput: dict
    starvation: dict
    source: str


class LearnedCheck:
    """The per-configuration models of `loratwin.learn` (trained on twin sweeps): for each max_loras,
    predicted throughput and the probability that the GPU starves (starved when >= 0.5).

    The models learnt the starvation rule over an hour and do not predict waits, so the cost
    model's guards hold too: an option whose predicted wait for a place in the batch, or for KV
    admission, exceeds `max_wait_s` (None: no limit) starves, and so does one above
    STABLE_UTILISATION of its KV cache (or max_num_seqs, or the token budget), where the queue
    never settles; as under the cost-model check."""

    name = "learned"

    def __init__(self, models: LearnedModels, lengths: LengthSpec | ShareGPTLengths | None = None,
                 slot_grid: Sequence[int] = SLOT_CANDIDATES, *, window_s: float = 3600.0,
                 max_wait_s: float | None = DEFAULT_MAX_WAIT_S) -> None:
        self.models = models
        self.lengths = lengths if lengths is not None else ShareGPTLengths()
        self.slot_grid = tuple(slot_grid)
        self.max_wait_s = max_wait_s
        # the cost model with only its guards: utilisation and the wait limit (its throughput
        # conditions, the late and loading shares, are the models' to judge)
        self._guards = CostModelCheck(self.lengths, window_s=window_s, max_wait_s=max_wait_s, max_late_share=math.inf,
                                      max_load_share=math.inf, slot_grid=self.slot_grid)

    @classmethod
    def for_profile(cls, profile: Profile, lengths: LengthSpec | ShareGPTLengths | None = None,
                    models_dir: str | Path | None = None, **options: object) -> LearnedCheck | None:
        """The learned check for a profile, or None when loratwin.learn or its models are missing;
        `options` (slot_grid, window_s, max_wait_s) as in the constructor."""
        models = learned_models(profile.name, models_dir)
        return None if models is None else cls(models, lengths, **options)

    def evaluate(self, adapters: Sequence[AdapterSpec], profile: Profile) -> GpuVerdict:
        from loratwin.learn.evaluators import predict_target
        from loratwin.learn.features import AdapterMix, as_matrix, config_features

        profile = _resolve(profile)
        m = self._guards.moments(profile)
        served = len(adapters)
        rates = np.array([a.rate_req_s for a in adapters], np.float64)
        ranks = [a.rank for a in adapters]
        offered = float(rates.sum()) * (m.prompt + m.output_asked)
        max_rank, startable, reason = startable_slots(profile, ranks, served, self.slot_grid)
        if not startable:
            return GpuVerdict(served, max_rank, offered, (), reason)
        slots = [s for s, _ in startable]
        mix = AdapterMix(rates, np.asarray(ranks, np.float64), m.prompt, m.output_asked)
        rows = [config_features(mix, s, max_rank) for s in slots]
        tok_s = predict_target(self.models.throughput, as_matrix(rows, self.models.throughput["features"]))
        p_starve = np.clip(predict_target(self.models.starvation, as_matrix(rows, self.models.starvation["features"])), 0.0, 1.0)
        guards = {o.max_loras: o for o in self._guards.evaluate_arrays(rates, ranks, profile).options}
        options = []
        for s, t, p in zip(slots, tok_s, p_starve):
            guard = guards[s]
            options.append(SlotOption(s, float(min(t, offered)), bool(p >= 0.5 or guard.starved),
                                      float(max(p, guard.starvation_risk)), wait_s=guard.wait_s, queue_s=guard.queue_s,
                                      kv_use=guard.kv_use))
        return GpuVerdict(served, max_rank, offered, tuple(options))


def _over_limit(wait_s: float, limit_s: float) -> float:
    """A wait over its limit (> 1: past it); a zero limit refuses any wait."""
    if wait_s <= 0:
        return 0.0
    return wait_s / limit_s if limit_s > 0 else math.inf


def learned_models(profile_name: str, models_dir: str | Path | None = None) -> LearnedModels | None:
    """The default per-configuration models loratwin.learn ships for a profile (its
    models/<profile>/manifest.json, or `models_dir`/<profile>), or None when missing."""
    try:
        from loratwin.learn import evaluators
    except ImportError:
        return None
    root = Path(models_dir) if models_dir is not None else Path(evaluators.__file__).parent / "models"
    directory = root / profile_name
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        chosen = {}
        for target in ("total_tok_s", "starved"):
            family = manifest["defaults"][target]
            entry = manifest["models"][f"{target}.{family}"]
            chosen[target] = evaluators.load_model(directory / entry["file"])
    except (OSError, KeyError, ValueError) as err:
        import warnings

        warnings.warn(f"{manifest_path}: learned models unreadable ({err}); using the cost-model check", stacklevel=2)
        return None
    return LearnedModels(chosen["total_tok_s"], chosen["starved"], str(directory))


def default_check(profile: Profile | str, lengths: LengthSpec | ShareGPTLengths | None = None) -> GpuCheck:
    """The cost-model check: the one whose placements were verified with the twin (the learned
    check is opt-in until its placements are verified the same way)."""
    return CostModelCheck(lengths)


CHECKS = ("auto", "cost-model", "learned", "twin")


def make_check(kind: str, profile: Profile | str, lengths: LengthSpec | ShareGPTLengths | None = None,
               *, window_s: float = 3600.0, max_wait_s: float | None = DEFAULT_MAX_WAIT_S,
               arrival: object | None = None) -> GpuCheck:
    """A check by name: auto (the cost-model check), cost-model, learned, twin. `window_s` and
    `max_wait_s` configure the cost-model check (see `CostModelCheck`) and the twin check (its
    runs' length), which also simulates the workload's `arrival` process (the cost model takes
    arrivals as Poisson)."""
    profile = _resolve(profile)
    if kind in ("auto", "cost-model"):
        return CostModelCheck(lengths, window_s=window_s, max_wait_s=max_wait_s)
    if kind == "twin":
        return TwinCheck(duration_s=window_s, lengths=lengths or ShareGPTLengths(),
                         arrival=arrival or PoissonArrival(), max_wait_s=max_wait_s)
    if kind == "learned":
        learned = LearnedCheck.for_profile(profile, lengths, window_s=window_s, max_wait_s=max_wait_s)
        if learned is None:
            raise InputError(f"--check learned: no learned models for profile {profile.name} (see `loratwin train`)")
        return learned
    raise InputError(f"--check must be one of {', '.join(CHECKS)}, got {kind!r}")
