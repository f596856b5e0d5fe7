"""The twin's idle-start TTFT: the requests that had to win a place in the batch."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.twin.result import idle_start_ttft_s


def requests(rows):
    adapter, sent, first, finish = zip(*rows)
    sent, first = np.array(sent, float), np.array(first, float)
    return {"adapter_id": np.array(adapter, dtype=object), "sent_s": sent,
            "finish_s": np.array(finish, float), "ttft_ms": (first - sent) * 1000}


def test_only_requests_sent_while_their_adapter_was_idle_count():
    q = requests([
        ("a", 0.0, 10.0, 20.0),  # idle start: waits 10
        ("a", 5.0, 10.0, 30.0),  # a's first request is unfinished: not counted
        ("b", 1.0, 3.0, 4.0),  # idle start: waits 2
        ("a", 31.0, 32.0, 40.0),  # a finished everything at 30: idle start, waits 1
        ("b", 2.0, 2.5, 4.5),  # b's first request runs until 4: not counted
        ("b", 50.0, 56.0, np.nan),  # never finishes but got its first token: idle start, waits 6
    ])
    assert idle_start_ttft_s(q) == pytest.approx((10 + 2 + 1 + 6) / 4)
    assert idle_start_ttft_s(q, sent_before_s=40.0) == pytest.approx((10 + 2 + 1) / 3)


def test_an_unfinished_request_keeps_its_adapter_busy_to_the_end():
    q = requests([("a", 0.0, np.nan, np.nan), ("a", 100.0, 101.0, 102.0)])
    assert idle_start_ttft_s(q) is None  # the first has no first token, the second is not an idle start
    assert idle_start_ttft_s({"adapter_id": np.array([], dtype=object), "sent_s": np.array([]),
                              "finish_s": np.array([]), "ttft_ms": np.array([])}) is None
