"""The engine counts time in int64 nanoseconds: steps as long as a profile allows keep their length,
and a configuration whose steps could overflow the clock is refused, never run as a server that
takes no time."""

from __future__ import annotations

import pytest

from loratwin.errors import InputError
from loratwin.profiles.model import MAX_TERM_MS, StepTimeModel

from .conftest import make_profile, run_case


def test_an_hour_long_step_lasts_an_hour():
    profile = make_profile(base_ms=MAX_TERM_MS)
    # one request: a prefill step yields the first token, two decode steps the rest
    result = run_case([(0.0, 0, 4, 3)], profile=profile, duration_s=4 * 3600.0)
    assert result.summary["completed"] == 1
    assert result.summary["mean_ttft_ms"] == pytest.approx(MAX_TERM_MS)
    assert result.summary["mean_itl_ms"] == pytest.approx(MAX_TERM_MS)


def test_steps_that_could_overflow_the_clock_are_refused():
    # each term is within its bound, but a step over a 100-million-token cache is not
    profile = make_profile(kv_tokens=100_000_000).model_copy(
        update={"step_time": StepTimeModel(base_ms=1.0, per_seq_ms=0.0, per_context_token_ms=MAX_TERM_MS)}
    )
    with pytest.raises(InputError, match=r"a step at this configuration could last .* beyond the twin's nanosecond"):
        run_case([(0.0, 0, 4, 3)], profile=profile, duration_s=10.0)


def test_a_window_beyond_the_clock_is_refused():
    with pytest.raises(InputError, match=r"--duration 1e\+12 s is beyond the twin's clock"):
        run_case([(0.0, 0, 4, 3)], duration_s=1e12)


def test_arrivals_far_past_the_window_are_left_out_not_wrapped():
    # 1e300 s in ns is beyond int64; it must not wrap to a negative (in-window) time
    result = run_case([(0.0, 0, 4, 3), (1e300, 0, 4, 3)], duration_s=10.0)
    assert result.summary["arrived"] == 1 and result.summary["completed"] == 1
