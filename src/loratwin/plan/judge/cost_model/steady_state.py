"""The cost-model estimator: the steady state of the twin's engine loop, solved from the profile's
cost model (step time, KV capacity, adapter loads). Microseconds to milliseconds per GPU share:
the default estimator for placement and recommendation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from loratwin.plan.judge.cost_model.lengths import LengthMoments, length_moments
from loratwin.plan.judge.cost_model.wait_solver import solve_waits
from loratwin.plan.judge.rule import AcceptanceRule, Prediction
from loratwin.plan.judge.slots import SLOT_CANDIDATES, resolve_profile, startable_slots
from loratwin.plan.judge.verdict import GpuVerdict, judged
from loratwin.profiles import Profile
from loratwin.twin.config import DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS
from loratwin.workload import AdapterSpec, LengthSpec, ShareGPTLengths

# Waits beyond this are not solved for (every window refuses them): a year
MAX_WAIT_SOLVED_S = 3.2e7


def kv_queue_share(kv_use: np.ndarray | float, profile: Profile) -> np.ndarray | float:
    """The mean wait for KV admission as a share of a request's run time, at KV use <= 1: a curve
    fitted on the twin (`profile.placement`, by scripts/fit_kv_queue.py)."""
    p = profile.placement
    return p.kv_queue_scale * np.exp(p.kv_queue_steepness * (np.asarray(kv_use) - 1.0))


class CostModelCheck:
    """Steady state of the twin's engine loop, solved from the profile's cost model.

    With arrivals at Λ req/s and a step time τ, about N = Λ (O + 1) τ requests run (Little's law);
    τ itself grows with N (per-sequence, prefill, context and LoRA terms), with the adapters in the
    running batch and with adapter loads when slots are fewer than adapters. An adapter holds one
    of the max_loras places in the batch for a busy period of its requests; when the busy
    adapters outnumber the places, the others' requests wait W for a place (see `_slot_state`),
    and what arrives in the last W + T of the rule's window does not finish inside it.
    The fixed point gives N, τ, the adapters in the batch and W, hence what the rule judges: the
    utilisation of the KV cache (or the token budget, or max_num_seqs), the late share
    (W + T) / window, the share of time loading adapters, W, and the queue every request meets
    for KV admission as the batch nears its KV capacity (`kv_queue_share`).
    Arrivals are taken as Poisson at each adapter's rate; burstier processes need the twin.
    `python scripts/check_cost_model.py` compares it with the twin on random shares.
    """

    name = "cost-model"

    fast = True

    def __init__(
        self,
        lengths: LengthSpec | ShareGPTLengths | None = None,
        rule: AcceptanceRule | None = None,
        *,
        max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
        max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS,
        slot_grid: Sequence[int] = SLOT_CANDIDATES,
    ) -> None:
        self.lengths = lengths if lengths is not None else ShareGPTLengths()
        self.rule = rule if rule is not None else AcceptanceRule()
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.slot_grid = tuple(slot_grid)

    def moments(self, profile: Profile) -> LengthMoments:
        return length_moments(self.lengths, profile.tokenizer or profile.name, profile.generation.output_tokens_ratio)

    def offered_tok_s(self, adapters: Sequence[AdapterSpec], profile: Profile) -> float:
        m = self.moments(profile)
        return sum(a.rate_req_s for a in adapters) * (m.prompt + m.output_asked)

    def evaluate(self, adapters: Sequence[AdapterSpec], profile: Profile) -> GpuVerdict:
        profile = resolve_profile(profile)
        rates = np.fromiter((a.rate_req_s for a in adapters), np.float64, len(adapters))
        return self.evaluate_arrays(rates, [a.rank for a in adapters], profile)

    def share_judge(self, adapters: Sequence[AdapterSpec], profile: Profile) -> Callable[[Sequence[int]], GpuVerdict]:
        profile = resolve_profile(profile)
        rates = np.array([a.rate_req_s for a in adapters], np.float64)
        ranks = [a.rank for a in adapters]

        def judge(members: Sequence[int]) -> GpuVerdict:
            idx = np.fromiter(members, np.int64, len(members))
            return self.evaluate_arrays(rates[idx], [ranks[i] for i in members], profile)

        return judge

    def evaluate_arrays(self, rates: np.ndarray, ranks: Sequence[int], profile: Profile) -> GpuVerdict:
        served, max_rank, offered, predictions, reason = self.predict_arrays(rates, ranks, profile)
        if not predictions:
            return GpuVerdict(served, max_rank, offered, (), reason)
        return judged(served, max_rank, offered, predictions, self.rule, profile)

    def predict_arrays(self, rates: np.ndarray, ranks: Sequence[int],
                       profile: Profile) -> tuple[int, int | None, float, list[Prediction], str]:
        """The predictions for every max_loras that starts: (served, max_lora_rank, offered tok/s,
        predictions, why none starts)."""
        # the same multiset of rates gives the same answer, whatever the order
        rates = np.sort(rates)
        m = self.moments(profile)
        total_rate = float(rates.sum())
        offered = total_rate * (m.prompt + m.output_asked)
        served = len(rates)
        max_rank, startable, reason = startable_slots(profile, ranks, served, self.slot_grid)
        if not startable:
            return served, max_rank, offered, [], reason
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
            late_share = np.where(wait > 0, (wait + run_s) / self.rule.window_s, 0.0)
        # near capacity every request queues for KV (taken at its value at capacity beyond 1, where
        # the utilisation limit refuses the share anyway)
        queue = run_s * kv_queue_share(np.minimum(kv_use, 1.0), profile)
        served_tok_s = total_rate * (m.prompt + m.output)
        capacity = self._capacity(rates, S, n_cap, max_rank, load_ms, profile, m)
        predicted = np.where(util <= 1.0, served_tok_s, np.minimum(served_tok_s, capacity))
        predictions = [
            Prediction(int(s), float(p), late_share=float(late), load_share=float(load), utilisation=float(u),
                       slot_wait_s=float(w), kv_queue_s=float(q), kv_use=float(k))
            for s, p, late, load, u, w, q, k in zip(slots, predicted, late_share, load_share, util, wait, queue, kv_use)
        ]
        return served, max_rank, offered, predictions, ""

    def step_ms(self, running, prefill_tokens, busy, S, max_rank, profile, m) -> np.ndarray:
        """The profile's step time (ms) with `running` requests, `prefill_tokens` per step and
        `busy` adapters in the batch, for max_loras S (vectors): `Profile.step_ms`, each request
        holding the mean context of a decoding request."""
        return profile.step_ms(running, prefill_tokens, running * m.context, np.minimum(S, busy), S, max_rank)

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
