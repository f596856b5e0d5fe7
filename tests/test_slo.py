"""The SLO rule: parsing `--slo KEY:MS` and judging a value against it."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loratwin.errors import InputError
from loratwin.slo import MAX_SLO_MS, SLO_METRICS, Slo, parse_slo, parse_slos, slo_status


def test_parse_each_key():
    for key, (metric, _) in SLO_METRICS.items():
        slo = parse_slo(f"{key}:2500")
        assert slo == Slo(key, 2500.0)
        assert slo.metric == metric
        assert slo.text == f"{key}:2500"


@pytest.mark.parametrize("text, words", [
    ("ttft_p99", "expected KEY:MS"),
    ("ttft_p95:100", "unknown key 'ttft_p95'"),
    ("ttft_p99:abc", "number of milliseconds"),
    ("ttft_p99:0", "positive"),
    ("ttft_p99:-5", "positive"),
    ("ttft_p99:inf", "positive"),
    ("ttft_p99:nan", "positive"),
    ("ttft_p99:1e12", "at most"),
])
def test_parse_refuses(text, words):
    with pytest.raises(InputError, match="--slo") as err:
        parse_slo(text)
    assert words in str(err.value)


def test_a_key_given_twice_is_refused():
    with pytest.raises(InputError, match="given twice"):
        parse_slos(["ttft_p99:100", "itl_p99:50", "ttft_p99:200"])
    assert parse_slos(None) == ()
    assert parse_slos(("itl_p99:50",)) == parse_slos(s for s in ["itl_p99:50"])


def test_a_list_of_slos_that_is_not_a_list_is_refused():
    # a manifest's `slos: ttft_p99:5000` (a string) is not read letter by letter
    with pytest.raises(InputError, match=r"m/manifest.json: slos: expected a list of KEY:MS, e.g. \[ttft_p99:2000\], got 'ttft"):
        parse_slos("ttft_p99:5000", "m/manifest.json: slos")
    with pytest.raises(InputError, match="expected a list of KEY:MS"):
        parse_slos({"ttft_p99": 5000})


def test_several_slos_in_one_flag_are_refused_with_the_flags_to_type():
    with pytest.raises(InputError, match="one SLO per --slo, e.g. --slo ttft_p99:100 --slo itl_p99:50"):
        parse_slo("ttft_p99:100,itl_p99:50")
    assert [s.key for s in parse_slos(["itl_p99:50", "ttft_mean:300"])] == ["itl_p99", "ttft_mean"]


def test_status_reads_the_summary_metric():
    slos = parse_slos(["ttft_p99:1000", "itl_p99:50", "tpot_p99:40"])
    rows = slo_status(slos, {"p99_ttft_all_sent_ms": 1000.0, "p99_ttft_ms": 1.0, "p99_itl_ms": 50.5, "p99_tpot_ms": None})
    assert [r["met"] for r in rows] == [True, False, None]


@given(limit=st.floats(min_value=1e-3, max_value=MAX_SLO_MS), value=st.floats(min_value=0, max_value=1e9))
def test_met_is_value_at_most_limit(limit, value):
    slo = Slo("ttft_mean", limit)
    assert slo.met(value) == (value <= limit)
    assert slo.met(math.nan) is None
