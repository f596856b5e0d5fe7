"""The periods of a drifting workload: a rates CSV or a trace cut into periods."""

from __future__ import annotations

import pytest

from loratwin import InputError
from loratwin.plan.drift import read_periods
from loratwin.workload import generate_requests, load_workload_yaml


def test_a_rates_csv_gives_one_workload_per_period_in_time_order(tmp_path):
    path = tmp_path / "rates.csv"
    path.write_text("period,adapter_id,rank,rate\n2,a,8,0.5\n0,a,8,1\n0,b,16,0.25\n2,c,32,2\n")
    periods = read_periods(path, 60)
    assert [(p.index, p.start_s, p.duration_s) for p in periods] == [(0, 0.0, 60.0), (2, 120.0, 60.0)]
    assert [(a.id, a.rank, a.rate_req_s) for a in periods[0].workload.adapters] == [("a", 8, 1.0), ("b", 16, 0.25)]
    assert [a.id for a in periods[1].workload.adapters] == ["a", "c"]


def test_a_trace_is_cut_into_periods_with_the_rates_it_sends(tmp_path):
    (tmp_path / "adapters.csv").write_text("adapter_id,rank\na,8\nb,16\n")
    rows = [(1.0, "a"), (2.0, "a"), (3.0, "b"), (11.0, "b"), (19.0, "b"), (24.0, "a")]
    (tmp_path / "trace.csv").write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n"
                                        + "".join(f"{t},{a},10,20\n" for t, a in rows))
    periods = read_periods(tmp_path, 10)
    # 24 s: two whole periods and a 4 s tail, under half a period: it joins the last one
    assert [p.start_s for p in periods] == [0.0, 10.0]
    assert [a.rate_req_s for a in periods[0].workload.adapters] == [0.2, 0.1]
    assert [a.rate_req_s for a in periods[1].workload.adapters] == pytest.approx([1 / 14, 2 / 14])


@pytest.mark.parametrize("period", [0, -5, float("nan"), float("inf")])
def test_a_period_must_be_positive_seconds(tmp_path, period):
    with pytest.raises(InputError, match="--period must be a number of seconds > 0"):
        read_periods(tmp_path / "rates.csv", period)


def test_a_workload_yaml_is_drawn_then_cut_into_periods_of_its_rates(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("arrival: unpredictable\nadapters:\n"
                    + "".join(f"  - {{id: a{i}, rank: 8, rate_req_s: 2}}\n" for i in range(4)))
    periods = read_periods(path, 300, duration_s=900, seed=3)
    assert [p.start_s for p in periods] == [0.0, 300.0, 600.0]
    drawn = generate_requests(load_workload_yaml(path), 900.0, 3)
    for k, p in enumerate(periods):
        inside = (drawn.arrival_s >= 300 * k) & (drawn.arrival_s < 300 * (k + 1))
        counts = [int((drawn.adapter[inside] == i).sum()) for i in range(4)]
        assert [a.rate_req_s for a in p.workload.adapters] == [c / 300 for c in counts]
        assert p.workload.arrival.kind == "poisson" and all(a.arrival is None for a in p.workload.adapters)
    # the unpredictable process changes every adapter's rate each period
    assert periods[0].workload.adapters != periods[2].workload.adapters
    assert read_periods(path, 300, duration_s=900, seed=3)[1].workload == periods[1].workload
