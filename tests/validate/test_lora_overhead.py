"""The LoRA-overhead calibration runs as step equations: what is read, what is filled in and how,
the profile's ITL there, and the fit that recovers known LoRA terms from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loratwin.errors import InputError
from loratwin.profiles import load_profile
from loratwin.validate import load_runs
from loratwin.validate.calibrate import calibrate
from loratwin.validate.lora_overhead import expected_adapters, read_lora_overhead
from loratwin.validate.replay import STEP_TERM_FIELDS, step_terms
from loratwin.validate.twin_fit import RUN_TERMS, StepEquations, _solve_run_terms, fit_step_time_on_runs

HEADER = ("model,status,experiment_set,max_num_seqs,max_loras,max_lora_rank,adapters_in_use,synthetic_output_tokens,"
          "input_tokens,output_tokens,mean_running,mean_batched_tokens,mean_unique_adapters_per_batch,"
          "mean_scheduler_time_us,mean_itl_ms\n")
ROWS = (
    # logged: batched tokens, distinct adapters, scheduler time
    "m,ok,restricted_adapters,220,300,8,1,100,5,100,190,224,1.0,380,35\n"
    "m,ok,restricted_adapters,220,300,8,128,100,5,100,209,222,105,376,70\n"
    # not logged: filled from the two rows above (same max_num_seqs and output)
    "m,ok,restricted_adapters,220,300,8,300,100,5,100,208,,,,87\n"
    # not counted: another model, another set, a failed run
    "q,ok,restricted_adapters,250,300,8,1,100,4,100,220,250,1.0,400,36\n"
    "m,ok,max_batch_probe,256,300,8,300,200,407,200,247,,,,156\n"
    "m,cuda_illegal_memory_access_at_engine_init,restricted_adapters,220,300,8,64,100,,,,,,,\n"
)


@pytest.fixture
def overhead_csv(tmp_path):
    path = tmp_path / "lora_overhead.csv"
    path.write_text(HEADER + ROWS)
    return path


def test_reads_the_ok_restricted_runs_of_the_model(overhead_csv):
    runs = read_lora_overhead(overhead_csv, "m")
    assert list(runs.lines) == [2, 3, 4]
    assert list(runs.itl_ms) == [35, 70, 87]
    assert list(runs.adapters_logged) == [True, True, False]
    assert runs.prefill_tokens[0] == pytest.approx(224 - 190)
    assert runs.context_tokens[0] == pytest.approx(190 * (5 + 100 / 2))
    assert runs.scheduler_ms[:2] == pytest.approx([0.380, 0.376])


def test_unlogged_values_come_from_the_runs_of_the_same_setting(overhead_csv):
    runs = read_lora_overhead(overhead_csv, "m")
    assert runs.prefill_tokens[2] == pytest.approx(223 - 208)  # median of 224 and 222
    assert runs.scheduler_ms[2] == pytest.approx(0.378)
    sequences = 223 - 208 * 5 / 100
    assert runs.adapters[2] == pytest.approx(300 * (1 - (1 - 1 / 300) ** sequences))


def test_an_unlogged_value_without_a_logged_sibling_is_refused(tmp_path):
    path = tmp_path / "lora_overhead.csv"
    path.write_text(HEADER + "m,ok,restricted_adapters,220,300,8,300,100,5,100,208,,,,87\n")
    with pytest.raises(InputError, match=r"line 2: mean_batched_tokens: empty, and no run with the same model"):
        read_lora_overhead(path, "m")


def test_a_file_without_runs_of_the_model_is_refused(overhead_csv):
    with pytest.raises(InputError, match="lora_overhead.csv: no rows for model 'q2'"):
        read_lora_overhead(overhead_csv, "q2")


def test_a_bad_number_names_its_line_and_column(tmp_path):
    path = tmp_path / "lora_overhead.csv"
    path.write_text(HEADER + "m,ok,restricted_adapters,220,300,8,1,100,5,100,190,224,1.0,380,-3\n")
    with pytest.raises(InputError, match="line 2: mean_itl_ms"):
        read_lora_overhead(path, "m")


def _with_prompt_slot_term(profile, value=2e-5):
    return profile.model_copy(update={"step_time": profile.step_time.model_copy(
        update={"lora_per_prefill_token_per_slot_ms": value})})


def test_the_step_terms_are_the_engines_compute_with_every_term():
    """The fit's per-step terms (replay.step_terms) times the profile's coefficients are the step
    compute the engine prices, the prompt token x slot term included (LoRA factor 1 and 0)."""
    profile = _with_prompt_slot_term(load_profile("llama-3.1-8b-instruct"))
    rng = np.random.default_rng(4)
    steps = {"batch": rng.integers(1, 256, 50), "prefill_tokens": rng.integers(0, 2048, 50),
             "context_tokens": rng.integers(0, 200_000, 50), "adapters": rng.integers(0, 30, 50)}
    slots, rank = 96, 16
    coefficients = np.array([profile.step_time.model_dump()[name] for name in STEP_TERM_FIELDS])
    terms = step_terms(steps, slots, rank)
    compute = profile.step_cost(slots, rank).compute_ms(steps["batch"], steps["prefill_tokens"],
                                                        steps["context_tokens"], steps["adapters"])
    lora = steps["adapters"] > 0  # the N x S term is counted in every step (left as it was)
    assert coefficients @ terms[:, lora] == pytest.approx(compute[lora], rel=1e-12)
    prompt_slot = terms[STEP_TERM_FIELDS.index("lora_per_prefill_token_per_slot_ms")]
    assert np.array_equal(prompt_slot, np.where(lora, steps["prefill_tokens"] * slots, 0))


def test_the_equations_price_the_runs_as_the_profile_does(overhead_csv):
    """terms @ coefficients + scheduler time is the profile's ITL there (its LoRA factor is 1 and 0),
    with every RUN_TERMS term non-zero."""
    profile = _with_prompt_slot_term(load_profile("llama-3.1-8b-instruct"))
    runs = read_lora_overhead(overhead_csv, "m")
    equations = runs.equations(weight=2.0)
    assert equations.predicted_ms(profile) == pytest.approx(runs.predicted_itl_ms(profile))
    by_hand = profile.step_ms(runs.running[0], runs.prefill_tokens[0], runs.context_tokens[0], runs.adapters[0], 300, 8)
    by_hand -= profile.step_cost(300, 8).scheduler_ms(runs.running[0], 0, 300, 300)
    assert runs.predicted_itl_ms(profile)[0] == pytest.approx(by_hand + 0.380)


def test_the_fit_recovers_known_lora_terms_from_step_equations():
    """With no replayed run at all, enough equations made by known terms give those terms back."""
    rng = np.random.default_rng(0)
    profile = _with_prompt_slot_term(load_profile("llama-3.1-8b-instruct"))
    st_values = profile.step_time.model_dump()
    n = rng.uniform(50, 250, 40)
    slots, rank = rng.choice([32, 96, 300], 40), rng.choice([8, 16, 32], 40)
    adapters = np.minimum(rng.uniform(1, 150, 40), n)
    prompt = rng.uniform(0, 400, 40)
    terms = np.column_stack([np.ones(40), n, prompt, n * 60, np.ones(40), rank, slots, adapters,
                             n * slots, prompt * slots])
    coefficients = np.array([st_values[name] for name in STEP_TERM_FIELDS])
    step = terms @ coefficients + 0.4
    fitted = _solve_run_terms(profile, [], RUN_TERMS, extra=StepEquations(terms, np.full(40, 0.4), step, 1.0))
    assert fitted == pytest.approx({name: st_values[name] for name in RUN_TERMS}, rel=1e-5, abs=1e-8)


@given(in_use=st.integers(1, 1000), sequences=st.floats(1, 2000))
def test_expected_adapters_lie_between_one_and_the_fewer_of_adapters_and_sequences(in_use, sequences):
    expected = expected_adapters(in_use, sequences)
    assert 1 - 1e-9 <= expected <= min(in_use, sequences) + 1e-9


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED / "calibration" / "lora_overhead.csv").is_file(),
                                reason="reference measurements not present")


@needs_data
def test_the_overhead_runs_pull_the_twin_in_the_loop_fit_towards_them():
    """Same few short runs, fitted without and with the LoRA-overhead runs (weighing 10 runs each):
    with them, the fitted profile is closer to their ITL, and each round reports that error."""
    model = "llama-3.1-8b-instruct"
    runs = [r for r in load_runs(SHARED / "real-vllm" / "runs.csv")
            if r.model == model and r.has_metrics and r.served_adapters <= 32][:6]
    overhead = read_lora_overhead(SHARED / "calibration" / "lora_overhead.csv", model)
    profile = load_profile(model)
    without, _ = fit_step_time_on_runs(profile, runs, rounds=1, workers=1, duration_s=120)
    with_them, history = fit_step_time_on_runs(profile, runs, rounds=1, workers=1, duration_s=120,
                                               extra=overhead.equations(10.0))
    error = overhead.equations(10.0).error
    assert error(with_them) < error(without)
    assert all(r.equations_error is not None and r.equations_share > 0 for r in history)


def test_calibrate_refuses_a_negative_weight(tmp_path):
    with pytest.raises(InputError, match="lora_overhead_weight must be a finite number >= 0, got -1"):
        calibrate("m", tmp_path, [], lora_overhead_weight=-1)
