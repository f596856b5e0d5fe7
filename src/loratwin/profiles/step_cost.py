"""The step-time formula, written once: a profile's step terms at one server configuration.

`Profile.step_ms` prices a step with it, the reference engine prices every step with it, and the
compiled engine reads the same terms as a packed float64 vector (`np.array(step_cost)`), in the
field order below (`engine.COST_*`; tests/twin/test_step_cost.py pins the engine's copy of the
formula to this one).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def _plain(value):
    # scalars in, float out; arrays in, array out
    return float(value) if np.ndim(value) == 0 else value


class StepCost(NamedTuple):
    """The terms of a profile's StepTimeModel and SchedulerOverheadModel, in ms, with those fixed
    by max_loras and max_lora_rank folded in (see `Profile.step_cost`)."""

    base_ms: float
    per_seq_ms: float
    per_prefill_token_ms: float
    per_context_token_ms: float
    lora_base: float  # LoRA factor: lora_base + lora_per_adapter x adapters
    lora_per_adapter: float
    sched_intercept_ms: float
    sched_per_running_ms: float
    sched_per_waiting_ms: float
    sched_per_waiting_slot_share_ms: float
    lora_step_ms: float  # lora_step_ms + lora_per_rank_ms x max_lora_rank + lora_per_slot_ms x max_loras
    lora_per_adapter_ms: float
    lora_per_seq_ms: float  # lora_per_seq_per_slot_ms x max_loras
    lora_per_prefill_token_ms: float  # lora_per_prefill_token_per_slot_ms x max_loras

    def compute_ms(self, running, prefill_tokens, context_tokens, adapters):
        """GPU time of a step of `running` sequences with `prefill_tokens` prompt tokens,
        `context_tokens` tokens already cached and `adapters` distinct adapters (the LoRA terms
        apply when > 0). Scalars or arrays."""
        base = (
            self.base_ms
            + self.per_seq_ms * running
            + self.per_prefill_token_ms * prefill_tokens
            + self.per_context_token_ms * context_tokens
        )
        with_lora = (
            base * (self.lora_base + self.lora_per_adapter * adapters)
            + self.lora_step_ms
            + self.lora_per_adapter_ms * adapters
            + self.lora_per_seq_ms * running
            + self.lora_per_prefill_token_ms * prefill_tokens
        )
        return _plain(np.where(np.asarray(adapters) > 0, with_lora, base))

    def scheduler_ms(self, running, waiting, max_loras, max_cpu_loras):
        """CPU time of the scheduler with `running` requests running (scheduled or not) and
        `waiting` waiting after admission, clamped at 0 (the fit's intercept is negative)."""
        ms = (
            self.sched_intercept_ms
            + self.sched_per_running_ms * running
            + self.sched_per_waiting_ms * waiting
            + self.sched_per_waiting_slot_share_ms * waiting * max_loras / max_cpu_loras
        )
        return _plain(np.maximum(ms, 0.0))
