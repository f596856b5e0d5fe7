"""The metrics-scrape blackout: what the client sees of the engine's tokens (twin.delivery)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loratwin.profiles.model import TailModel
from loratwin.twin.delivery import NONE, Blackouts, delivered, first_use_blackouts, scrape_blackouts, union

from .conftest import make_profile, run_case


def test_a_token_made_in_a_blackout_arrives_when_it_ends():
    b = Blackouts(np.array([100, 300]), np.array([150, 300]))
    got = delivered(np.array([50, 100, 120, 150, 299, 300, -1]), b)
    assert got.tolist() == [50, 150, 150, 150, 299, 300, -1]


def test_scrapes_follow_the_poll_interval_and_last_their_blocking_share():
    tails = TailModel(metrics_poll_interval_s=0.01, metrics_scrape_base_ms=4.0, metrics_scrape_ms_per_adapter=1.0,
                      metrics_scrape_ms_per_running=0.5, metrics_scrape_blocking_share=0.5)
    step_end = np.arange(1, 101) * 1_000_000  # 100 steps of 1 ms
    batch = np.full(100, 4)
    b = scrape_blackouts(tails, step_end, batch, 2, 40_000_000)
    # a scrape takes 4 + 1 x 2 adapters + 0.5 x 4 running = 8 ms, blocking for 4 ms; next poll 10 ms after it
    assert b.start_ns.tolist() == [10_000_000, 28_000_000]
    assert b.end_ns.tolist() == [14_000_000, 32_000_000]


def test_scrape_lengths_vary_around_their_mean_by_the_cv_and_repeat_with_the_seed():
    fixed = TailModel(metrics_poll_interval_s=0.001, metrics_scrape_base_ms=2.0)
    varied = fixed.model_copy(update={"metrics_scrape_cv": 0.5})
    until = 100_000_000_000  # 100 s: many scrapes
    step_end = np.arange(1, 100_001) * 1_000_000
    batch = np.zeros(step_end.size, np.int64)
    same = scrape_blackouts(fixed, step_end, batch, 0, until)
    lengths = lambda b: (b.end_ns - b.start_ns) / 1e6  # noqa: E731
    assert np.all(lengths(same) == 2.0)
    one = scrape_blackouts(varied, step_end, batch, 0, until, seed=7)
    assert lengths(one).mean() == pytest.approx(2.0, rel=0.03)
    assert lengths(one).std() / lengths(one).mean() == pytest.approx(0.5, rel=0.1)
    again = scrape_blackouts(varied, step_end, batch, 0, until, seed=7)
    other = scrape_blackouts(varied, step_end, batch, 0, until, seed=8)
    assert np.array_equal(one.end_ns, again.end_ns) and not np.array_equal(one.end_ns, other.end_ns)


def test_off_when_every_scrape_term_is_zero():
    tails = TailModel()
    assert not tails.scrape_on
    assert scrape_blackouts(tails, np.array([1]), np.array([1]), 8, 10**10).start_ns.size == 0


def _one_stream(tails: TailModel | None):
    profile = make_profile()
    if tails is not None:
        profile = profile.model_copy(update={"tails": tails})
    # one request: its 4-token prompt takes step 1 (first token at 1 ms), then one token per 1 ms step
    return run_case([(0.0, 0, 4, 20)], profile=profile, duration_s=1.0)


def test_tokens_of_a_blackout_arrive_together_when_it_ends():
    r = _one_stream(TailModel(metrics_poll_interval_s=0.01, metrics_scrape_base_ms=5.0))
    plain = _one_stream(None).summary
    s = r.summary
    # tokens made at 10..14 ms arrive at 15 ms with the one made then: gaps 1 ms x 8, 6 ms, 0 x 5, 1 ms x 5
    assert s["p99_itl_ms"] == pytest.approx(6.0)
    assert s["p50_itl_ms"] == pytest.approx(1.0)
    assert s["mean_itl_ms"] == pytest.approx(1.0)  # the wait is made up by the tokens that come with it
    assert s["mean_ttft_ms"] == pytest.approx(1.0)
    assert s["mean_tpot_ms"] == pytest.approx(1.0)  # first and last token arrive when made
    assert s["mean_scrape_blackout_ms"] == pytest.approx(5.0, rel=0.01)
    assert plain["p99_itl_ms"] == pytest.approx(1.0)
    assert s["total_tok_s"] == plain["total_tok_s"]  # the engine does not wait for the API server


def test_a_first_token_made_in_a_blackout_waits_for_its_end():
    tails = TailModel(metrics_poll_interval_s=0.001, metrics_scrape_base_ms=2.5)
    r = _one_stream(tails)  # the first scrape blocks 1-3.5 ms; the first token is made at 1 ms
    assert r.summary["mean_ttft_ms"] == pytest.approx(3.5)


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.tuples(st.integers(1, 50), st.integers(0, 50)), min_size=1, max_size=20),
    times=st.lists(st.integers(0, 3000), min_size=1, max_size=50),
)
def test_delivery_is_never_early_never_inside_a_blackout_and_keeps_order(gaps, times):
    starts, ends, t = [], [], 0
    for before, length in gaps:
        t += before
        starts.append(t)
        ends.append(t + length)
        t += length
    b = Blackouts(np.array(starts, np.int64), np.array(ends, np.int64))
    made = np.sort(np.array(times, np.int64))
    got = delivered(made, b)
    assert (got >= made).all()
    assert (np.diff(got) >= 0).all()
    for s, e in zip(starts, ends):
        assert not ((got >= s) & (got < e)).any()


def test_a_request_sent_in_a_blackout_reaches_the_server_when_it_ends():
    profile = make_profile().model_copy(update={"tails": TailModel(metrics_poll_interval_s=0.01,
                                                                   metrics_scrape_base_ms=5.0)})
    # sent at 12 ms, inside the scrape of 10-15 ms: it waits 3 ms, then its 1 ms prompt step
    r = run_case([(0.012, 0, 4, 2)], profile=profile, duration_s=1.0)
    assert r.summary["mean_ttft_ms"] == pytest.approx(4.0)
    assert run_case([(0.012, 0, 4, 2)], duration_s=1.0).summary["mean_ttft_ms"] == pytest.approx(1.0)


def test_each_adapter_first_request_starts_one_stall_and_stalls_queue():
    tails = TailModel(first_use_stall_ms=3.0)
    # adapter 1 first at 1 ms, adapter 0 first at 2 ms (in adapter 1's stall: waits for its end at 4 ms),
    # adapter 2 first at 20 ms; later requests of an adapter and unsent ones (-1) start nothing
    sent = np.array([1, 2, 5, 20, 30, -1]) * 1_000_000
    adapter = np.array([1, 0, 1, 2, 0, 3])
    b = first_use_blackouts(tails, sent, adapter)
    assert b.start_ns.tolist() == [1_000_000, 4_000_000, 20_000_000]
    assert b.end_ns.tolist() == [4_000_000, 7_000_000, 23_000_000]
    assert first_use_blackouts(TailModel(), sent, adapter).start_ns.size == 0


def test_a_first_request_held_by_a_scrape_stalls_from_the_scrape_end():
    scrape = Blackouts(np.array([0]), np.array([5]))
    b = first_use_blackouts(TailModel(first_use_stall_ms=1e-6), np.array([2, 9]), np.array([0, 1]), scrape)
    assert b.start_ns.tolist() == [5, 9] and b.end_ns.tolist() == [6, 10]


def test_union_merges_overlapping_blackouts():
    a = Blackouts(np.array([0, 10, 40]), np.array([5, 20, 41]))
    b = Blackouts(np.array([3, 12, 30]), np.array([8, 15, 35]))
    u = union(a, b)
    assert u.start_ns.tolist() == [0, 10, 30, 40]
    assert u.end_ns.tolist() == [8, 20, 35, 41]
    assert union(a, NONE) is a and union(NONE, b) is b


def test_a_first_use_stall_delays_the_first_request_and_a_neighbour():
    profile = make_profile().model_copy(update={"tails": TailModel(first_use_stall_ms=5.0)})
    # adapter 0 at 0 ms stalls the server to 5 ms; adapter 0 again at 2 ms waits for it too;
    # adapter 0's third request at 100 ms sees no stall: TTFTs 6, 4, 1 ms (1 ms prompt steps)
    cases = [(0.0, 0, 4, 2), (0.002, 0, 4, 2), (0.1, 0, 4, 2)]
    r = run_case(cases, profile=profile, duration_s=1.0)
    assert r.summary["mean_ttft_ms"] == pytest.approx((6 + 4 + 1) / 3, rel=0.05)
    assert r.summary["first_use_stalls"] == 1
    plain = run_case(cases, duration_s=1.0).summary
    assert plain["mean_ttft_ms"] == pytest.approx(1.0, rel=0.05)
    assert r.summary["total_tok_s"] == plain["total_tok_s"]
