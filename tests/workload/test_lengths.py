import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loratwin.errors import InputError
from loratwin.workload import LengthSpec, sample_lengths
from loratwin.workload.lengths import check_length_spec


def assert_within_bounds(spec, prompts, outputs):
    assert prompts.min() >= spec.min_tokens
    assert outputs.min() >= spec.min_tokens
    assert prompts.max() <= spec.max_prompt_tokens
    assert (prompts.astype(np.int64) + outputs).max() <= spec.max_total_tokens


@pytest.mark.parametrize(
    "spec",
    [
        LengthSpec(),
        LengthSpec(mean_prompt_tokens=100, mean_output_tokens=300),
        LengthSpec(mean_prompt_tokens=500, mean_output_tokens=400),
        LengthSpec(mean_prompt_tokens=12, mean_output_tokens=20, min_tokens=1, max_prompt_tokens=64, max_total_tokens=96),
    ],
    ids=["sharegpt-like", "short-prompts", "long-prompts", "tight-bounds"],
)
def test_truncated_means_hit_targets_and_bounds_hold(spec):
    prompts, outputs = sample_lengths(spec, 200_000, np.random.default_rng(11))
    assert prompts.dtype == np.int32 and outputs.dtype == np.int32
    assert len(prompts) == len(outputs) == 200_000
    assert_within_bounds(spec, prompts, outputs)
    assert prompts.mean() == pytest.approx(spec.mean_prompt_tokens, rel=0.015)
    assert outputs.mean() == pytest.approx(spec.mean_output_tokens, rel=0.015)


def test_lengths_look_like_sharegpt():
    prompts, outputs = sample_lengths(LengthSpec(), 100_000, np.random.default_rng(0))
    # Heavy right tail: the median sits well below the mean; prompt and output are independent.
    assert np.median(prompts) < 0.8 * prompts.mean()
    assert abs(np.corrcoef(prompts, outputs)[0, 1]) < 0.1


def test_same_generator_state_same_lengths():
    first = sample_lengths(LengthSpec(), 5_000, np.random.default_rng(3))
    second = sample_lengths(LengthSpec(), 5_000, np.random.default_rng(3))
    other = sample_lengths(LengthSpec(), 5_000, np.random.default_rng(4))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_zero_requests():
    prompts, outputs = sample_lengths(LengthSpec(), 0, np.random.default_rng(0))
    assert prompts.shape == outputs.shape == (0,)
    assert prompts.dtype == np.int32


@settings(max_examples=25, deadline=None)
@given(
    min_tokens=st.integers(1, 16),
    max_prompt=st.integers(32, 4096),
    extra_total=st.integers(32, 4096),
    prompt_share=st.floats(0.05, 0.6),
    output_share=st.floats(0.05, 0.6),
    seed=st.integers(0, 1000),
)
def test_bounds_always_hold_or_spec_is_refused(min_tokens, max_prompt, extra_total, prompt_share, output_share, seed):
    max_total = max_prompt + extra_total
    spec = LengthSpec(
        min_tokens=min_tokens,
        max_prompt_tokens=max_prompt,
        max_total_tokens=max_total,
        mean_prompt_tokens=min_tokens + prompt_share * (max_prompt - min_tokens),
        mean_output_tokens=min_tokens + output_share * (max_total - max_prompt - min_tokens),
    )
    try:
        check_length_spec(spec)
    except InputError as err:
        assert "lengths:" in str(err)
        return
    prompts, outputs = sample_lengths(spec, 2_000, np.random.default_rng(seed))
    assert len(prompts) == 2_000
    assert_within_bounds(spec, prompts, outputs)


def test_unreachable_means_are_refused():
    spec = LengthSpec(mean_prompt_tokens=900, mean_output_tokens=1000)
    with pytest.raises(InputError, match="lengths: .*widen the bounds"):
        sample_lengths(spec, 10, np.random.default_rng(0))
