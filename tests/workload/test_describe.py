import json

import numpy as np
import pytest

from loratwin.errors import InputError
from loratwin.workload import (
    AdapterSpec,
    GammaArrival,
    LengthSpec,
    PoissonArrival,
    UnpredictableArrival,
    WorkloadSpec,
    describe_workload,
    generate_requests,
    reference_layout,
    zipf_layout,
)


def test_reference_layout_summary():
    summary = describe_workload(reference_layout(128, [1.6, 0.8, 0.4], [8, 16], 0))
    assert summary["adapters"] == 128
    assert summary["aggregate_rate_req_s"] == pytest.approx(120.0)
    assert summary["expected_aggregate_rate_req_s"] == pytest.approx(120.0)
    assert summary["expected_requests"] == pytest.approx(432_000)
    assert summary["rate_req_s"] == pytest.approx({"min": 0.4, "median": 0.8, "mean": 120 / 128, "max": 1.6})
    assert summary["ranks"] == {8: 64, 16: 64}
    assert summary["arrival_processes"] == {"poisson": 128}
    # ShareGPT lengths by default, counted with the Llama-3.1 tokenizer
    prompt, output = summary["lengths"]["mean_prompt_tokens"], summary["lengths"]["mean_output_tokens"]
    assert prompt == pytest.approx(222.9, rel=0.015) and output == pytest.approx(196.4, rel=0.015)
    assert summary["offered_tok_s"] == pytest.approx(120.0 * (prompt + output))


def test_parametric_lengths_summary():
    workload = reference_layout(128, [1.6, 0.8, 0.4], [8, 16], 0, lengths=LengthSpec())
    summary = describe_workload(workload)
    assert summary["lengths"]["mean_prompt_tokens"] == 223
    assert summary["lengths"]["mean_output_tokens"] == 198
    assert summary["offered_tok_s"] == pytest.approx(120.0 * (223 + 198))
    json.dumps(summary)  # plain values only


def test_mix_of_processes_and_schedules():
    workload = WorkloadSpec(
        adapters=[
            AdapterSpec(id="a", rank=8, rate_req_s=1.0),
            AdapterSpec(
                id="b",
                rank=16,
                rate_req_s=2.0,
                arrival=GammaArrival(cv=2, schedule=[{"until_s": 1800, "scale": 1.0}, {"scale": 3.0}]),
            ),
            AdapterSpec(id="c", rank=16, rate_req_s=0.0, arrival=UnpredictableArrival()),
        ],
        lengths=LengthSpec(mean_prompt_tokens=300, mean_output_tokens=100),
    )
    summary = describe_workload(workload, duration_s=3600)
    assert summary["arrival_processes"] == {"poisson": 1, "gamma": 1, "unpredictable": 1}
    assert summary["scheduled_adapters"] == 1
    assert summary["idle_adapters"] == 1
    assert summary["aggregate_rate_req_s"] == pytest.approx(3.0)
    assert summary["expected_aggregate_rate_req_s"] == pytest.approx(1.0 + 2.0 * 2.0)
    assert summary["offered_tok_s"] == pytest.approx(5.0 * 400)


def test_expected_rate_matches_generated_requests():
    workload = reference_layout(
        30, [1.0, 2.0], [8], 0, arrival=PoissonArrival(schedule=[{"until_s": 100, "scale": 0.5}, {"scale": 2.0}])
    )
    summary = describe_workload(workload, duration_s=400)
    table = generate_requests(workload, 400, seed=0)
    assert len(table) == pytest.approx(summary["expected_requests"], rel=4 / np.sqrt(summary["expected_requests"]))


def test_unpredictable_expected_rate_drifts_up():
    # Times 1.5 or divided by 1.5 with equal odds: the mean factor grows by 13/12 per period.
    workload = reference_layout(4, [1.0], [8], 0, arrival=UnpredictableArrival(period_s=300))
    summary = describe_workload(workload, duration_s=900)
    assert summary["expected_aggregate_rate_req_s"] == pytest.approx(4 * (1 + 13 / 12 + (13 / 12) ** 2) / 3)


def test_skew_share():
    assert describe_workload(reference_layout(20, [1.0], [8], 0))["busiest_tenth_rate_share"] == pytest.approx(0.1)
    skewed = describe_workload(zipf_layout(20, 10.0, 1.5, [8], 0))
    assert skewed["busiest_tenth_rate_share"] > 0.6


@pytest.mark.parametrize("duration_s", [0, -1, float("nan"), "3600"])
def test_bad_duration(duration_s):
    with pytest.raises(InputError, match="duration_s"):
        describe_workload(reference_layout(2, [1.0], [8], 0), duration_s)
