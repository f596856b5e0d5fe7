"""The step-time formula is written once (profiles.step_cost.StepCost, behind Profile.step_ms); the
compiled engine keeps a copy numba can run (engine.step_cost_ms), pinned to it here."""

from __future__ import annotations

import inspect
import zlib

import numpy as np
import pytest

from loratwin.profiles import builtin_profiles, load_profile
from loratwin.profiles.model import SchedulerOverheadModel, StepTimeModel
from loratwin.profiles.step_cost import StepCost
from loratwin.twin import engine

from .conftest import make_profile


def test_cost_vector_indices_are_the_step_cost_fields():
    assert engine.N_COST == len(StepCost._fields)
    for index, field in enumerate(StepCost._fields):
        assert getattr(engine, "COST_" + field.upper()) == index, field


def test_run_engine_takes_the_engine_inputs_then_the_log_capacities():
    params = list(inspect.signature(engine.run_engine.py_func).parameters)
    assert params == [*engine.EngineInputs._fields, "step_cap", "seg_cap", "gap_cap", "pstack_cap"]


def _profiles():
    # the built-in ones, and one with every term non-zero (the built-ins leave some at 0)
    every_term = make_profile().model_copy(
        update={
            "step_time": StepTimeModel(
                base_ms=3.7, per_seq_ms=0.041, per_prefill_token_ms=0.0123, per_context_token_ms=7.1e-5,
                lora_factor_base=1.31, lora_factor_per_adapter=0.0193, lora_step_ms=0.21,
                lora_per_rank_ms=0.0031, lora_per_slot_ms=0.017, lora_per_adapter_ms=0.093,
                lora_per_seq_per_slot_ms=0.00041, lora_per_prefill_token_per_slot_ms=2.3e-5,
            ),
            "scheduler_overhead": SchedulerOverheadModel(
                intercept_ms=-0.197, per_running_ms=0.004, per_waiting_ms=0.00023, per_waiting_slot_share_ms=-0.0071
            ),
        }
    )
    return [load_profile(name) for name in builtin_profiles()] + [every_term]


def _random_steps(rng, n):
    max_loras = rng.integers(1, 385, n)
    running = rng.integers(0, 2049, n)
    return {
        "running": running,
        "prefill": rng.integers(0, 4097, n),
        "context": rng.integers(0, 1_000_000, n),
        "adapters": np.minimum(rng.integers(0, 40, n), max_loras) * (rng.random(n) < 0.8),
        "left_out": rng.integers(0, 300, n) * (rng.random(n) < 0.3),
        "waiting": rng.integers(0, 30_000, n) * (rng.random(n) < 0.6),
        "max_loras": max_loras,
        "max_cpu_loras": max_loras + rng.integers(0, 500, n),
        "max_lora_rank": rng.choice([8, 16, 32, 64], n),
    }


@pytest.mark.parametrize("profile", _profiles(), ids=lambda p: p.name)
def test_compiled_step_cost_equals_the_profile_step_time(profile):
    rng = np.random.default_rng(zlib.crc32(profile.name.encode()))
    s = _random_steps(rng, 400)
    for i in range(400):
        step = {k: int(v[i]) for k, v in s.items()}
        cost = profile.step_cost(step["max_loras"], step["max_lora_rank"])
        compute_ms, sched_ms = engine.step_cost_ms(
            np.array(cost, np.float64), step["running"], step["prefill"], step["context"], step["adapters"],
            step["running"] + step["left_out"], step["waiting"], step["max_loras"], step["max_cpu_loras"],
        )
        expected = profile.step_ms(
            step["running"], step["prefill"], step["context"], step["adapters"], step["max_loras"],
            step["max_lora_rank"], waiting=step["waiting"], max_cpu_loras=step["max_cpu_loras"],
            left_out=step["left_out"],
        )
        assert compute_ms + sched_ms == pytest.approx(expected, rel=1e-9, abs=0), step
        # the reference engine prices with the parts: the engine must match them bit for bit
        assert compute_ms == cost.compute_ms(step["running"], step["prefill"], step["context"], step["adapters"])
        assert sched_ms == cost.scheduler_ms(
            step["running"] + step["left_out"], step["waiting"], step["max_loras"], step["max_cpu_loras"]
        )


def test_step_time_takes_arrays_as_it_takes_numbers():
    profile = _profiles()[-1]
    s = _random_steps(np.random.default_rng(3), 200)
    vector = profile.step_ms(
        s["running"], s["prefill"], s["context"], s["adapters"], s["max_loras"], s["max_lora_rank"],
        waiting=s["waiting"], max_cpu_loras=s["max_cpu_loras"], left_out=s["left_out"],
    )
    assert isinstance(vector, np.ndarray) and vector.shape == (200,)
    one_by_one = [
        profile.step_ms(
            s["running"][i], s["prefill"][i], s["context"][i], s["adapters"][i], s["max_loras"][i],
            s["max_lora_rank"][i], waiting=s["waiting"][i], max_cpu_loras=s["max_cpu_loras"][i],
            left_out=s["left_out"][i],
        )
        for i in range(200)
    ]
    np.testing.assert_array_equal(vector, one_by_one)
    assert isinstance(one_by_one[0], float)


def test_step_time_is_the_documented_formula():
    p = _profiles()[-1]
    st, so = p.step_time, p.scheduler_overhead
    N, P, K, A, S, R, W, C, L = 50, 300, 20_000, 3, 8, 16, 4, 24, 5
    base = st.base_ms + st.per_seq_ms * N + st.per_prefill_token_ms * P + st.per_context_token_ms * K
    compute = (
        base * (st.lora_factor_base + st.lora_factor_per_adapter * A) + st.lora_step_ms + st.lora_per_rank_ms * R
        + st.lora_per_slot_ms * S + st.lora_per_adapter_ms * A + st.lora_per_seq_per_slot_ms * N * S
        + st.lora_per_prefill_token_per_slot_ms * P * S
    )
    sched = (
        so.intercept_ms + so.per_running_ms * (N + L) + so.per_waiting_ms * W + so.per_waiting_slot_share_ms * W * S / C
    )
    assert sched > 0
    got = p.step_ms(N, P, K, A, S, R, waiting=W, max_cpu_loras=C, left_out=L)
    assert got == pytest.approx(compute + sched, rel=1e-12)
    # no adapter in the batch: no LoRA term; a negative scheduler time counts as none
    assert p.step_ms(N, P, K, 0, S, R) == pytest.approx(base + so.intercept_ms + so.per_running_ms * N, rel=1e-12)
    assert p.step_ms(0, 0, 0, 0, S, R) == st.base_ms
    # max_cpu_loras defaults to max_loras
    assert p.step_ms(N, P, K, A, S, R, waiting=W) == p.step_ms(N, P, K, A, S, R, waiting=W, max_cpu_loras=S)


@pytest.mark.parametrize("profile", _profiles(), ids=lambda p: p.name)
def test_the_prompt_token_x_slot_term_adds_x_s_p_to_a_step_with_adapters(profile):
    """At 0 the term changes nothing; at x > 0 it adds x x max_loras x prompt tokens to a step that
    has an adapter (through the resolved cost), and nothing to one that has none."""
    N, P, K, S, R = 40, 700, 30_000, 96, 16
    x = 3e-5

    def with_term(value):
        return profile.model_copy(update={"step_time": profile.step_time.model_copy(
            update={"lora_per_prefill_token_per_slot_ms": value})})

    zero, some = with_term(0.0), with_term(x)
    assert zero.step_cost(S, R).lora_per_prefill_token_ms == 0
    assert some.step_cost(S, R).lora_per_prefill_token_ms == pytest.approx(x * S)
    for adapters in (1, 5):
        base = zero.step_ms(N, P, K, adapters, S, R)
        if profile.step_time.lora_per_prefill_token_per_slot_ms == 0:
            assert base == profile.step_ms(N, P, K, adapters, S, R)
        assert some.step_ms(N, P, K, adapters, S, R) - base == pytest.approx(x * S * P, rel=1e-9)
    assert some.step_ms(N, P, K, 0, S, R) == zero.step_ms(N, P, K, 0, S, R)
