"""Goodput: completed requests per second whose own latencies meet every SLO (vllm bench serve's
per-request rule), on a hand-built result; and the TPOT percentiles of a run's summary."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.slo import parse_slos
from loratwin.twin.result import goodput_req_s


def requests():
    # four requests: TTFT 100, 300, 100, 50 ms; TPOT 20, 20, 60 ms, and one of a single output token;
    # the last did not complete inside the window
    return {
        "completed": np.array([True, True, True, False]),
        "ttft_ms": np.array([100.0, 300.0, 100.0, 50.0]),
        "tpot_ms": np.array([20.0, 20.0, 60.0, np.nan]),
        "output_tokens": np.array([11, 11, 11, 1]),
    }


@pytest.mark.parametrize("slos, good", [
    ([], 3),  # no SLO: every completed request
    (["ttft_p99:200"], 2),
    (["tpot_p99:30"], 2),
    (["itl_p99:30"], 2),  # per request, a request's TPOT stands for its inter-token gaps
    (["ttft_mean:200", "tpot_p99:30"], 1),
    (["ttft_p99:1"], 0),
])
def test_goodput_counts_completed_requests_meeting_every_slo(slos, good):
    assert goodput_req_s(requests(), parse_slos(slos), 10.0) == pytest.approx(good / 10.0)


def test_a_single_token_request_meets_the_tpot_slo():
    r = requests()
    r["completed"][3] = True  # its TPOT is NaN: one output token
    assert goodput_req_s(r, parse_slos(["tpot_p99:1"]), 1.0) == pytest.approx(1.0)


def test_a_run_reports_tpot_percentiles_and_its_goodput():
    from loratwin.twin import ServerConfig, simulate
    from loratwin.workload import reference_layout

    result = simulate(reference_layout(4, [0.5], [8], 0), ServerConfig(max_loras=4), "llama-3.1-8b-instruct",
                      duration_s=60.0, seed=0)
    s = result.summary
    assert s["p50_tpot_ms"] <= s["p99_tpot_ms"] and s["mean_tpot_ms"] > 0
    assert result.goodput_req_s([]) == pytest.approx(s["request_throughput_req_s"])
    tight = result.goodput_req_s(parse_slos([f"tpot_p99:{s['p50_tpot_ms']}"]))
    assert 0 < tight < s["request_throughput_req_s"]
    # the per-request TPOT is the summary's, as the client sees it (delivery times)
    done = result.requests["completed"] & (result.requests["output_tokens"] > 1)
    assert np.mean(result.requests["tpot_ms"][done]) == pytest.approx(s["mean_tpot_ms"])
