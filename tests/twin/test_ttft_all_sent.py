"""The TTFT the SLOs judge: every request sent (but in the window's last part), one never served
counted at its wait so far, so that a starved adapter's requests are not left out."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.twin.result import ADAPTER_CHECK_TAIL_FRACTION, ttft_all_sent_ms

from .conftest import run_case

S = 1_000_000_000  # ns


def test_a_request_never_served_counts_its_wait_until_the_end():
    sent = np.array([0, 1 * S, 2 * S, -1])  # the last was never sent (the client's queue was full)
    first = np.array([S // 10, -1, 2 * S + S // 2, -1])
    waited, still = ttft_all_sent_ms(sent, first, 10 * S)
    assert waited.tolist() == pytest.approx([100.0, 9000.0, 500.0]) and still == 1


def test_a_first_token_after_the_end_counts_as_none_yet():
    waited, still = ttft_all_sent_ms(np.array([0]), np.array([11 * S]), 10 * S)
    assert waited.tolist() == [10_000.0] and still == 1


def test_requests_sent_in_the_last_part_of_the_window_are_left_out():
    edge = int(10 * S * (1 - ADAPTER_CHECK_TAIL_FRACTION))
    waited, still = ttft_all_sent_ms(np.array([edge - 1, edge]), np.array([-1, -1]), 10 * S)
    assert waited.size == 1 and still == 1


def test_a_starved_adapter_raises_the_slo_ttft_but_not_the_completed_one():
    # one slot; adapter 0 always has a request running (1 s each, a new one every 0.5 s), so
    # adapter 1's request, sent at 1 s, is skipped to the end: it never completes
    hot = [(0.5 * i, 0, 16, 1000) for i in range(20)]
    result = run_case(sorted([*hot, (1.0, 1, 16, 10)]), max_loras=1, duration_s=10.0)
    s = result.summary
    assert s["no_first_token_at_end"] == 1
    assert s["p99_ttft_ms"] < 10.0  # the completed requests start at once
    # 20 requests sent before the last 5% (19 hot, 1 quiet): the starved one waited 9 s
    assert s["mean_ttft_all_sent_ms"] > 9000.0 / 20
    assert s["p99_ttft_all_sent_ms"] > 5000.0
