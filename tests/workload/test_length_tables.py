import numpy as np
import pytest

from loratwin.errors import InputError
from loratwin.workload.length_tables import available_tables, load_length_table, sample_from_table

# Pool means logged by the reference client (tokens per request), per model.
REFERENCE_POOL_MEANS = {
    "llama-3.1-8b-instruct": (222.9, 196.4),
    "qwen-2.5-7b-instruct": (222.9, 200.0),
}
MODELS = sorted(REFERENCE_POOL_MEANS)


def test_every_built_in_model_has_a_table():
    assert available_tables() == MODELS


@pytest.mark.parametrize("model", MODELS)
def test_table_loads_as_int32_pairs(model):
    prompts, outputs = load_length_table(model)
    assert prompts.dtype == np.int32 and outputs.dtype == np.int32
    assert len(prompts) == len(outputs) > 10_000
    # Cached: the same arrays come back, and they cannot be changed by a caller.
    again = load_length_table(model)
    assert again[0] is prompts and again[1] is outputs
    with pytest.raises(ValueError):
        prompts[0] = 1


@pytest.mark.parametrize("model", MODELS)
def test_rows_respect_the_reference_filter(model):
    prompts, outputs = load_length_table(model)
    assert prompts.min() >= 4
    assert outputs.min() >= 4
    assert prompts.max() <= 1024
    assert (prompts.astype(np.int64) + outputs).max() <= 2048


@pytest.mark.parametrize("model", MODELS)
def test_means_match_the_reference_pools(model):
    prompts, outputs = load_length_table(model)
    ref_prompt, ref_output = REFERENCE_POOL_MEANS[model]
    assert prompts.mean() == pytest.approx(ref_prompt, rel=0.015)
    assert outputs.mean() == pytest.approx(ref_output, rel=0.015)


@pytest.mark.parametrize("model", MODELS)
def test_sampling_is_deterministic_by_seed(model):
    first = sample_from_table(model, 1000, np.random.default_rng(7))
    second = sample_from_table(model, 1000, np.random.default_rng(7))
    other = sample_from_table(model, 1000, np.random.default_rng(8))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("model", MODELS)
def test_samples_are_whole_table_rows(model):
    prompts, outputs = load_length_table(model)
    rows = set(zip(prompts.tolist(), outputs.tolist()))
    sp, so = sample_from_table(model, 2000, np.random.default_rng(3))
    assert sp.dtype == np.int32 and so.dtype == np.int32 and len(sp) == len(so) == 2000
    assert set(zip(sp.tolist(), so.tolist())) <= rows


def test_large_samples_keep_the_table_means():
    model = "llama-3.1-8b-instruct"
    prompts, outputs = load_length_table(model)
    sp, so = sample_from_table(model, 200_000, np.random.default_rng(0))
    assert sp.mean() == pytest.approx(prompts.mean(), rel=0.01)
    assert so.mean() == pytest.approx(outputs.mean(), rel=0.01)


def test_zero_and_negative_sample_sizes():
    sp, so = sample_from_table(MODELS[0], 0, np.random.default_rng(0))
    assert len(sp) == len(so) == 0
    with pytest.raises(ValueError):
        sample_from_table(MODELS[0], -1, np.random.default_rng(0))


def test_unknown_model_lists_available_tables():
    with pytest.raises(InputError) as excinfo:
        load_length_table("gpt-2")
    message = str(excinfo.value)
    assert "gpt-2" in message
    for model in MODELS:
        assert model in message
    with pytest.raises(InputError):
        sample_from_table("gpt-2", 3, np.random.default_rng(0))
