"""`loratwin profile fit`'s library: the fit recovers a known step time, KV capacities from the runs'
logs, which runs are fitted, and the nearest measured runs for wanted configurations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loratwin.errors import InputError
from loratwin.profiles import load_profile
from loratwin.profiles.model import GenerationModel, KVCapacityModel, StepTimeModel
from loratwin.validate import replay_runs
from loratwin.validate.fit_profile import fit_header, fit_profile, kv_with_measurements, model_key, select_fit_runs
from loratwin.validate.nearest_runs import WantedRun, distance, nearest_runs
from loratwin.validate.replay import STEP_TERM_FIELDS
from loratwin.validate.runs import RealRun

WINDOW_S = 240.0


def make_run(run_id, served, max_loras, rank, rates, *, status="ok", model="llama-3.1-8b-instruct", **measured):
    ranks = (8, 16) if rank == 16 else (8, 16, 32) if rank == 32 else (rank,)
    counts = [served // len(rates) + (1 if i < served % len(rates) else 0) for i in range(len(rates))]
    return RealRun(run_id=run_id, source_set="lab", model=model, status=status, max_loras=max_loras,
                   served_adapters=served, max_lora_rank=rank, rank_cycle=ranks, rate_values=tuple(rates),
                   rate_counts=tuple(counts), measured=measured, starved=measured.pop("_starved", None))


@pytest.fixture(scope="module")
def truth():
    """A profile with a known step time (the built-in llama one, every term additive)."""
    return load_profile("llama-3.1-8b-instruct").model_copy(update={"generation": GenerationModel()})


@pytest.fixture(scope="module")
def measured_runs(truth):
    """A few short runs 'measured' on the twin with the known profile: light ones (ITL) and ones past
    capacity (step time), at two ranks and several slot counts."""
    configs = [
        ("light-8", 8, 8, 16, (0.2, 0.4, 0.8)),
        ("light-32", 32, 16, 32, (0.05, 0.1, 0.2)),
        ("heavy-32", 32, 8, 16, (0.4, 0.8, 1.6)),
        ("heavy-64", 64, 32, 32, (0.4, 0.8, 1.6)),
        ("mid-128", 128, 64, 16, (0.025, 0.05, 0.1)),
    ]
    plain = [make_run(*c) for c in configs]
    results = replay_runs(plain, lambda _m: truth, seeds=(0,), workers=1, duration_s=WINDOW_S)
    return [
        make_run(*c, total_tok_s=r.total_tok_s, mean_itl_ms=r.mean_itl_ms,
                 throughput_over_offered=r.throughput_over_offered, _starved=r.starved)
        for c, r in zip(configs, results, strict=True)
    ]


def crude(profile):
    return profile.model_copy(update={"step_time": StepTimeModel(base_ms=5.0, per_seq_ms=0.0)})


def coefficients(profile) -> np.ndarray:
    terms = profile.step_time.model_dump()
    return np.array([terms[name] for name in STEP_TERM_FIELDS])


@pytest.mark.slow
def test_the_fit_recovers_a_known_step_time(truth, measured_runs):
    assert {r.starved for r in measured_runs} == {True, False}  # both kinds of equation are there
    start = crude(truth)
    fit = fit_profile(start, measured_runs, rounds=8, workers=1, duration_s=WINDOW_S)
    # the step time on the steps each run holds (as the known profile schedules them)
    replayed = replay_runs(measured_runs, lambda _m: truth, seeds=(0,), workers=1, duration_s=WINDOW_S)
    want, got, before = coefficients(truth), coefficients(fit.profile), coefficients(start)
    for r in replayed:
        assert got @ r.terms_per_step == pytest.approx(want @ r.terms_per_step, rel=0.05), r.run.run_id
        assert abs(before @ r.terms_per_step - want @ r.terms_per_step) > 0.25 * (want @ r.terms_per_step)
    # and runs the fit never saw, between and beyond the fitted ones
    held_out = [make_run("held-48", 48, 24, 16, (0.2, 0.4, 0.8)), make_run("held-96", 96, 16, 32, (0.1, 0.2, 0.4))]
    real = replay_runs(held_out, lambda _m: truth, seeds=(0,), workers=1, duration_s=WINDOW_S)
    twin = replay_runs(held_out, lambda _m: fit.profile, seeds=(0,), workers=1, duration_s=WINDOW_S)
    for a, b in zip(real, twin, strict=True):
        assert a.throughput_over_offered < 0.9  # capacity-bound: the step time sets the throughput
        assert b.total_tok_s == pytest.approx(a.total_tok_s, rel=0.03)
        assert b.mean_itl_ms == pytest.approx(a.mean_itl_ms, rel=0.05)
    assert fit.best.throughput_error < 1.0 and fit.best.itl_error < 2.0
    assert fit.profile.fitted == "calibrated" and fit.fitted_runs == len(measured_runs)
    header = fit_header(fit, "loratwin profile fit x", "runs.csv", "profile p")
    assert header.startswith("# Written by: loratwin profile fit x\n# Started from: profile p\n# Fitted on 5 runs")


def test_runs_that_say_nothing_are_not_fitted_on(truth):
    runs = [make_run("a", 8, 8, 16, (0.1,), status="oom_at_start"), make_run("b", 8, 8, 16, (0.1,), total_tok_s=5.0)]
    with pytest.raises(InputError, match="no usable runs"):
        fit_profile(truth, runs)
    with pytest.raises(InputError, match="--rounds must be >= 1"):
        fit_profile(truth, runs, rounds=0)


def test_the_runs_of_the_model_are_chosen():
    runs = [make_run("a", 8, 8, 16, (0.1,), total_tok_s=100.0, mean_itl_ms=20.0),
            make_run("b", 8, 8, 16, (0.1,), model="qwen-2.5-7b-instruct", total_tok_s=100.0, mean_itl_ms=20.0),
            make_run("c", 8, 8, 16, (0.1,), status="port_in_use")]
    assert [r.run_id for r in select_fit_runs(runs, "meta-llama/Llama-3.1-8B-Instruct", "f")] == ["a"]
    with pytest.raises(InputError, match=r"f: no runs of model 'mistralai/x' \(it holds runs of llama-3.1-8b-instruct, qwen"):
        select_fit_runs(runs, "mistralai/x", "f")
    with pytest.raises(InputError, match="none of the 1 runs of model 'qwen' can be fitted on"):
        select_fit_runs([make_run("d", 8, 8, 16, (0.1,), model="qwen")], "qwen", "f")


def test_model_key():
    assert model_key("meta-llama/Llama-3.1-8B-Instruct") == model_key("llama-3.1-8b-instruct") == "llama-3.1-8b-instruct"
    assert model_key("/models/my-llama/config.json") == "my-llama"


KV = KVCapacityModel(capacity_tokens={16: {8: 100_000, 32: 90_000, 64: 80_000, 128: 60_000},
                                      32: {8: 95_000, 64: 50_000, 128: None}},
                     infeasible_reason={32: {128: "no memory"}})


def test_logged_kv_capacities_replace_and_move_the_start_profiles():
    runs = [make_run("a", 32, 32, 16, (0.1,), kv_cache_tokens=93_000.0),
            make_run("b", 32, 32, 16, (0.1,), kv_cache_tokens=93_002.0),  # two logs of one point: the median
            make_run("c", 64, 64, 32, (0.1,), status="oom_at_start")]
    kv, points = kv_with_measurements(KV, runs)
    assert points == 1
    table = kv.capacity_tokens
    assert table[16][32] == 93_001
    # the other points of rank 16 move by the logged point's error (+3,001); rank 32 by the median error
    assert table[16] == {8: 103_001, 32: 93_001, 64: 83_001, 128: 63_001}
    assert table[32][8] == 98_001 and table[32][128] is None
    # a point where the lab's server did not start (and none did) is infeasible, with the reason
    assert table[32][64] is None and "did not start in the lab runs" in kv.infeasible_reason[32][64]
    assert kv_with_measurements(KV, [make_run("d", 8, 8, 16, (0.1,))]) == (KV, 0)


def test_a_logged_capacity_at_a_new_point_and_a_new_rank():
    kv, _ = kv_with_measurements(KV, [make_run("a", 16, 16, 8, (0.1,), kv_cache_tokens=120_000.0)])
    # the start profile has no rank 8: nothing to correct by, the logged point stands alone
    assert kv.capacity_tokens[8] == {16: 120_000} and kv.capacity_tokens[16] == KV.capacity_tokens[16]


def test_logged_capacities_correct_a_memory_models_bytes():
    from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
    from loratwin.profiles.derive.kv import kv_model_for

    derived = kv_model_for(resolve_model("meta-llama/Llama-3.1-8B-Instruct"), resolve_gpu("h100-80gb"))
    modelled = derived.tokens(32, 16)
    runs = [make_run("a", 32, 32, 16, (0.1,), kv_cache_tokens=float(modelled - 20_000))]
    kv, points = kv_with_measurements(derived, runs)
    assert points == 1 and kv.tokens(32, 16) == modelled - 20_000
    # elsewhere the memory model, its non-torch bytes raised by the 20,000 tokens it missed
    assert kv.memory.non_torch_bytes == derived.memory.non_torch_bytes + 20_000 * 131_072
    for loras, rank in ((8, 8), (64, 32)):
        assert kv.tokens(loras, rank) == pytest.approx(derived.tokens(loras, rank) - 20_000, abs=32)
    with pytest.raises(InputError, match="run b: kv_cache_tokens 5 is not a KV cache size"):
        kv_with_measurements(derived, [make_run("b", 32, 32, 16, (0.1,), kv_cache_tokens=5.0)])


# -- nearest runs -----------------------------------------------------------------------------------------

POOL = [make_run(f"r{i}", s, m, k, rates, total_tok_s=1.0, mean_itl_ms=1.0)
        for i, (s, m, k, rates) in enumerate([(16, 8, 16, (0.4, 0.8, 1.6)), (64, 8, 16, (0.4, 0.8, 1.6)),
                                              (64, 32, 32, (0.025, 0.05, 0.1)), (384, 128, 16, (0.4, 0.8, 1.6))])]


def test_nearest_runs_picks_each_run_once():
    wanted = [WantedRun(60, 8, 16, (0.4, 0.8, 1.6)), WantedRun(64, 8, 16, (0.4, 0.8, 1.6)),
              WantedRun(300, 100, 16, (0.5, 1, 2))]
    assert [r.run_id for r in nearest_runs(wanted, POOL)] == ["r1", "r0", "r3"]
    with pytest.raises(InputError, match="5 configurations wanted, but only 4 measured runs"):
        nearest_runs(wanted + wanted[:2], POOL)


def test_planned_runs_may_spell_lists_as_the_runs_file_does():
    class Planned:
        served_adapters, max_loras, max_lora_rank = 64, 32, 32
        rate_values, adapter_rank_cycle = "0.025 0.05 0.1", "8 16 32"

    assert distance(Planned(), POOL[2]) == 0
    assert nearest_runs([Planned()], POOL)[0].run_id == "r2"


@given(served=st.integers(1, 512), loras=st.integers(1, 512), rank=st.sampled_from([8, 16, 32, 64]),
       rate=st.floats(0.001, 10))
def test_distance_is_zero_only_at_the_run_and_never_negative(served, loras, rank, rate):
    d = distance(WantedRun(served, loras, rank, (rate, 2 * rate, 4 * rate)), POOL[2])
    assert d >= 0
    if (served, loras, rank) != (64, 32, 32):
        assert d > 0
    assert distance(WantedRun(64, 32, 32, (0.025, 0.05, 0.1)), POOL[2]) == 0


def test_a_drained_lab_run_is_judged_on_the_offered_load_of_its_send_window():
    from loratwin.validate.twin_fit import measured_saturation

    # a lab's client waited for every request: 300 s of sending, 380 s in all
    lab = make_run("lab", 8, 8, 16, (1.0,), total_tok_s=4_000.0, throughput_over_offered=0.99,
                   approx_offered_tok_s=5_000.0, configured_time_s=300.0, duration_s=380.0)
    assert measured_saturation(lab) == pytest.approx(0.8)
    reference = make_run("ref", 8, 8, 16, (1.0,), total_tok_s=4_000.0, throughput_over_offered=0.7,
                         approx_offered_tok_s=5_000.0, configured_time_s=3600.0, duration_s=3602.0)
    assert measured_saturation(reference) == 0.7
