"""The fast engine against the plain Python reference (twin.reference): identical outputs.

Engine inputs are built by `simulate()` itself (its `_run_engine` is wrapped to capture them), so
both sides see exactly what a real run feeds the engine.
"""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loratwin.profiles import load_profile
from loratwin.profiles.model import SchedulerOverheadModel, StepTimeModel
from loratwin.twin import ServerConfig, engine, simulate, simulation
from loratwin.twin.reference import run_reference
from loratwin.workload import reference_layout

from .conftest import BLOCK, make_profile, make_workload

pytestmark = pytest.mark.usefixtures("warm_engine")


def capture_run(*args, **kwargs):
    """simulate(...) -> (engine inputs, fast engine output, RunResult)."""
    captured = {}
    real = simulation._run_engine

    def spy(engine_args, *rest, **kw):
        captured["args"] = engine_args
        captured["out"] = real(engine_args, *rest, **kw)
        return captured["out"]

    with mock.patch.object(simulation, "_run_engine", spy):
        result = simulate(*args, **kwargs)
    return captured["args"], captured["out"], result


def assert_outputs_equal(fast: engine.EngineOutput, ref: engine.EngineOutput) -> None:
    for name in engine.EngineOutput._fields:
        a, b = getattr(fast, name), getattr(ref, name)
        assert a.dtype == b.dtype, name
        assert np.array_equal(a, b), f"{name}:\nfast {a}\nref  {b}"


def random_case(seed: int):
    """A small run drawn from `seed`: bursts of arrivals, a small KV cache, few slots."""
    rng = np.random.default_rng(seed)

    def pick(*options):
        return options[rng.integers(len(options))]

    n_adapters = int(rng.integers(1, 7))
    ranks = [int(r) for r in rng.choice([8, 16], n_adapters)]
    n_req = int(rng.integers(5, 81))
    # bursts: many requests share a few arrival instants, so that queues form
    bursts_us = rng.integers(0, pick(1, 2_000, 50_000, 400_000), int(rng.integers(1, 7)))
    arrivals_us = np.sort(rng.choice(bursts_us, n_req) + rng.integers(0, pick(1, 300), n_req))
    reqs = [
        (t / 1e6, int(rng.integers(n_adapters)), int(rng.integers(1, 301)), int(rng.integers(1, 121)))
        for t in arrivals_us
    ]
    max_loras = int(rng.integers(1, n_adapters + 1))
    max_cpu_loras = pick(None, max_loras, int(rng.integers(max_loras, n_adapters + 1)))
    max_num_seqs = int(rng.integers(1, 13))
    budget = int(rng.integers(max(16, max_num_seqs), 401))
    cap = pick(None, int(rng.integers(1, 16)))
    # small KV cache: every request fits alone, a few together
    need = max(BLOCK * math.ceil((p + o) / BLOCK) for _, _, p, o in reqs) + BLOCK
    kv_tokens = need + pick(0, 16, 100, 600, 3000)
    base = make_profile(kv_tokens, gpu_load_ms=pick(0.0, 0.37, 3.1), disk_load_ms=pick(0.0, 2.3, 11.7))
    step_time = StepTimeModel(
        base_ms=pick(0.3, 1.0, 10.54174836),
        per_seq_ms=pick(0.0, 0.0437994),
        per_prefill_token_ms=pick(0.0, 0.00123),
        per_context_token_ms=pick(0.0, 0.000071),
        lora_factor_base=pick(1.0, 2.0001448221),
        lora_factor_per_adapter=pick(0.0, 0.0193011757),
        lora_step_ms=pick(0.0, 0.21),
        lora_per_rank_ms=pick(0.0, 0.0031),
        lora_per_slot_ms=pick(0.0, 0.017),
        lora_per_adapter_ms=pick(0.0, 0.093),
        lora_per_seq_per_slot_ms=pick(0.0, 0.00041),
        lora_per_prefill_token_per_slot_ms=pick(0.0, 0.000023),
    )
    # a negative intercept exercises the clamp at 0 on light steps
    overhead = SchedulerOverheadModel(
        intercept_ms=pick(0.0, -0.197361607873, 0.05),
        per_running_ms=pick(0.0, 0.004044808041),
        per_waiting_ms=pick(0.0, 0.000227238168, 0.013),
        per_waiting_slot_share_ms=pick(0.0, -0.000268213086, 0.0071),
    )
    profile = base.model_copy(update={"step_time": step_time, "scheduler_overhead": overhead})
    workload, table = make_workload(reqs, ranks=ranks)
    server = ServerConfig(
        max_loras=max_loras,
        max_cpu_loras=max_cpu_loras,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=budget,
        client_max_waiting=cap,
    )
    # a window that may cut the run short, or one long enough for all of it
    duration_s = pick(0.05, 0.4, 3.0, 60.0)
    sample_interval_s = pick(0.001, 0.0137, 0.5)
    return workload, table, server, profile, duration_s, sample_interval_s


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(seed=st.integers(0, 2**32 - 1))
def test_engine_matches_reference_on_random_small_runs(seed):
    workload, table, server, profile, duration_s, sample_interval_s = random_case(seed)
    args, fast, _ = capture_run(
        workload, server, profile, duration_s=duration_s, requests=table, sample_interval_s=sample_interval_s
    )
    assert_outputs_equal(fast, run_reference(*args))


def test_step_time_never_below_one_ns():
    # all costs zero: every step lasts the 1 ns minimum
    workload, table = make_workload([(0.0, 0, 40, 5), (0.0, 1, 20, 3), (1e-6, 0, 7, 4)])
    args, _, _ = capture_run(workload, ServerConfig(max_loras=1), make_profile(), duration_s=0.01, requests=table)
    args = args[:-1] + (np.zeros(engine.N_COST),)
    fast = engine.EngineOutput(*engine.run_engine(*args, 1000, 1000, 1000, 1000))
    ref = run_reference(*args)
    assert_outputs_equal(fast, ref)
    assert np.all(ref.step_overhead == 1) and np.diff(ref.step_end).min() == 1


def test_adapters_used_in_the_same_step_are_evicted_lowest_index_first():
    # slots 2, adapters 1 and 2 preloaded on the GPU. Step 0 uses adapter 2 then 1: equally recent.
    # At 10 ms adapter 0 needs a slot: adapter 1 (lower index) leaves, so at 20 ms adapter 1 is
    # loaded again (adapter 2, least recent by then, leaves).
    reqs = [(0.0, 2, 4, 1), (0.0, 1, 4, 1), (0.010, 0, 4, 1), (0.020, 1, 4, 1)]
    workload, table = make_workload(reqs)
    profile = make_profile(gpu_load_ms=1.0)
    args, fast, _ = capture_run(workload, ServerConfig(max_loras=2), profile, duration_s=0.1, requests=table)
    ref = run_reference(*args)
    assert_outputs_equal(fast, ref)
    assert list(ref.adapter_gpu_loads) == [1, 1, 0]


def test_engine_matches_reference_on_a_realistic_run():
    # 16 adapters, ~20 req/s for 2 minutes on the llama profile, 4 GPU slots, a client cap
    workload = reference_layout(16, rates=[0.5, 1.0, 1.5, 2.0], ranks=[8, 16], seed=3)
    profile = load_profile("llama-3.1-8b-instruct")
    server = ServerConfig(max_loras=4, client_max_waiting=400)
    args, fast, result = capture_run(workload, server, profile, duration_s=120.0, seed=5)
    ref = run_reference(*args)
    assert_outputs_equal(fast, ref)
    assert fast.counters[engine.CNT_STEPS] > 1000
    assert fast.counters[engine.CNT_GPU_LOADS] > 0

    with mock.patch.object(simulation, "_run_engine", lambda engine_args, *rest, **kw: run_reference(*engine_args)):
        ref_result = simulate(workload, server, profile, duration_s=120.0, seed=5)
    assert ref_result.summary == result.summary
    assert ref_result.adapters == result.adapters
