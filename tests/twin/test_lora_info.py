"""The LoRA-info gauge's series (twin.lora_info) and the scrapes they lengthen (twin.delivery)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from loratwin.profiles.model import TailModel
from loratwin.twin.delivery import scrape_blackouts
from loratwin.twin.lora_info import lora_info_series


def test_a_new_pair_of_sets_adds_a_series_listing_its_names():
    # adapter 0: sent 0, first token 10, last 30; adapter 1: sent 15, first 20, last 40
    got = lora_info_series(np.array([5, 12, 17, 25, 35, 45, 50]), np.array([0, 15]), np.array([10, 20]),
                           np.array([30, 40]), np.array([0, 1]), 2)
    # after the steps: waiting {0}; running {0}; running {0} waiting {1}; running {0, 1}; running {1};
    # nothing (new: the run started before the first request); nothing again (no new series)
    assert got.series.tolist() == [1, 2, 3, 4, 5, 6, 6]
    assert got.names.tolist() == [1, 2, 4, 6, 7, 7, 7]


def test_a_pair_seen_before_adds_nothing():
    # adapter 0 alone twice: waiting then running, twice over
    got = lora_info_series(np.array([1, 3, 6, 8, 10]), np.array([0, 5]), np.array([2, 7]), np.array([4, 9]),
                           np.array([0, 0]), 1)
    # waiting {0}, running {0}, waiting {0} (seen), running {0} (seen), then nothing (new)
    assert got.series.tolist() == [1, 2, 2, 2, 3]
    assert got.names.tolist() == [1, 2, 2, 2, 2]


def test_two_requests_of_one_adapter_list_it_once():
    got = lora_info_series(np.array([5, 15]), np.array([0, 1]), np.array([10, 11]), np.array([20, 21]),
                           np.array([0, 0]), 1)
    assert got.series.tolist() == [1, 2] and got.names.tolist() == [1, 2]


def test_requests_never_served_stay_waiting_and_unsent_ones_count_nowhere():
    got = lora_info_series(np.array([5, 10]), np.array([0, -1]), np.array([-1, -1]), np.array([-1, -1]),
                           np.array([0, 1]), 2)
    assert got.series.tolist() == [1, 1] and got.names.tolist() == [1, 1]


def test_no_requests_no_series():
    got = lora_info_series(np.array([5, 10]), np.array([], np.int64), np.array([], np.int64),
                           np.array([], np.int64), np.array([], np.int64), 3)
    assert got.series.tolist() == [0, 0] and got.names.tolist() == [0, 0]


requests = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1000), st.integers(0, 500), st.integers(0, 500)),
                    min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(requests, st.randoms(use_true_random=False))
def test_the_series_only_grow_and_do_not_depend_on_request_order(reqs, rnd):
    adapter = np.array([r[0] for r in reqs])
    sent = np.array([r[1] for r in reqs])
    first = sent + np.array([r[2] for r in reqs])
    finish = first + np.array([r[3] for r in reqs])
    steps = np.arange(1, 2101, 7)
    got = lora_info_series(steps, sent, first, finish, adapter, 6)
    assert np.all(np.diff(got.series) >= 0) and np.all(np.diff(got.names) >= 0)
    assert got.series[-1] <= steps.size
    # a new series lists at most every adapter twice (waiting and running)
    assert np.all(np.diff(np.r_[0, got.names]) <= 12)
    order = list(range(len(reqs)))
    rnd.shuffle(order)
    again = lora_info_series(steps, sent[order], first[order], finish[order], adapter[order], 6)
    assert np.array_equal(got.series, again.series) and np.array_equal(got.names, again.names)


def test_scrapes_lengthen_with_the_series_so_far():
    tails = TailModel(metrics_poll_interval_s=0.01, metrics_scrape_ms_per_series=1.0,
                      metrics_scrape_ms_per_listed_name=0.5)
    step_end = np.arange(1, 101) * 1_000_000  # 100 steps of 1 ms
    batch = np.zeros(100, np.int64)
    gauge = lora_info_series(step_end, np.array([0, 0]), np.array([9_500_000, 15_500_000]),
                             np.array([50_000_000, 60_000_000]), np.array([0, 1]), 2)
    b = scrape_blackouts(tails, step_end, batch, 2, 40_000_000, lora_info=gauge)
    # the scrape at 10 ms sees the gauge as the step ending at 10 ms left it: 2 series (waiting {0, 1};
    # running {0} waiting {1}) listing 4 names, 2 + 0.5 x 4 = 4 ms; the next, at 24 ms, one more
    # (running {0, 1}): 3 + 0.5 x 6 = 6 ms
    assert (b.end_ns - b.start_ns).tolist() == [4_000_000, 6_000_000]
    without = scrape_blackouts(tails, step_end, batch, 2, 40_000_000)  # no series: the scrapes take nothing
    assert without.start_ns.tolist() == [10_000_000, 20_000_000, 30_000_000]
    assert np.all(without.end_ns == without.start_ns)


def test_the_gauge_is_followed_only_when_a_scrape_depends_on_it():
    assert not TailModel(metrics_scrape_base_ms=5.0).gauge_on
    assert TailModel(metrics_scrape_ms_per_series=0.01).gauge_on
    assert not TailModel(metrics_scrape_ms_per_listed_name=0.0).gauge_on
