"""Latency SLOs in the acceptance rule: each SLO one more limit, the wait limit they replace, and
the twin judging the SLOs an estimator does not predict."""

from __future__ import annotations

import re

import pytest

from loratwin.cli.judging import DEFAULT_MAX_WAIT_S, build_rule
from loratwin.errors import InputError
from loratwin.plan.bound import lower_bound_gpus
from loratwin.plan.judge import AcceptanceRule, CostModelCheck, Prediction, TwinCheck, TwinJudgesSlos, make_check
from loratwin.plan.judge.rule import slo_quantity
from loratwin.profiles import load_profile
from loratwin.slo import SLO_METRICS, parse_slos
from loratwin.workload import AdapterSpec

PROFILE = load_profile("llama-3.1-8b-instruct")


def rule(*slos: str, **options) -> AcceptanceRule:
    return AcceptanceRule(slos=parse_slos(slos), **options)


def test_each_slo_key_judges_a_prediction_field():
    for key in SLO_METRICS:
        (slo,) = parse_slos([f"{key}:100"])
        assert slo_quantity(slo) in Prediction.__dataclass_fields__


def test_an_slo_past_its_limit_refuses_and_is_named():
    r = rule("ttft_p99:2000", "itl_p99:100")
    ok = r.judge(Prediction(8, 1000.0, shortfall=0.01, p99_ttft_all_sent_s=1.5, p99_itl_s=0.05), PROFILE)
    assert ok.accepted and ok.quantity == "p99_ttft_all_sent_s" and ok.pressure == pytest.approx(0.75)
    late = r.judge(Prediction(8, 1000.0, shortfall=0.01, p99_ttft_all_sent_s=2.5, p99_itl_s=0.05), PROFILE)
    assert not late.accepted and late.short == "SLO ttft_p99"
    assert late.deciding == "p99 time to first token (SLO ttft_p99) 2,500 ms of 2,000 ms allowed"
    slow = r.judge(Prediction(8, 1000.0, p99_ttft_all_sent_s=0.1, p99_itl_s=0.12), PROFILE)
    assert not slow.accepted and slow.quantity == "p99_itl_s" and "120 ms of 100 ms" in slow.deciding
    # an estimator that does not predict the quantity is not judged on it
    assert r.judge(Prediction(8, 1000.0, shortfall=0.01), PROFILE).accepted


def test_slos_replace_the_wait_limit_unless_both_are_given():
    waits = Prediction(8, 1000.0, slot_wait_s=200.0, mean_ttft_s=200.0, p99_ttft_all_sent_s=1.0)
    assert not AcceptanceRule().judge(waits, PROFILE).accepted  # the default wait limit
    replaced = rule("ttft_p99:2000")
    assert replaced.max_wait_s is None and replaced.judge(waits, PROFILE).accepted
    both = rule("ttft_p99:2000", max_wait_s=60.0, max_wait_with_slos=True)
    judgement = both.judge(waits, PROFILE)
    assert both.max_wait_s == 60.0 and not judgement.accepted and judgement.quantity in ("slot_wait_s", "mean_ttft_s")


def test_build_rule_tells_a_typed_max_wait_from_the_default():
    assert build_rule(None, 0.1, 3600.0).max_wait_s == DEFAULT_MAX_WAIT_S
    assert build_rule(None, 0.1, 3600.0, slo=["ttft_p99:2000"]).max_wait_s is None
    assert build_rule(60.0, 0.1, 3600.0, slo=["ttft_p99:2000"]).max_wait_s == 60.0
    assert build_rule(float("inf"), 0.1, 3600.0, slo=["ttft_p99:2000"]).max_wait_s is None
    assert [s.text for s in build_rule(None, 0.1, 3600.0, slo=["itl_p99:50"]).slos] == ["itl_p99:50"]


def test_the_twin_judges_the_slos_the_cost_model_does_not_predict():
    r = rule("ttft_p99:1", window_s=60.0)  # 1 ms: no request gets its first token that fast
    check = make_check("auto", PROFILE, rule=r)
    assert isinstance(check, TwinJudgesSlos) and isinstance(check.screen, CostModelCheck)
    assert check.note.startswith("the cost model does not predict p99 TTFT: the twin judges the SLOs")
    adapters = [AdapterSpec(id=f"a{i}", rank=8, rate_req_s=0.2) for i in range(4)]
    verdict = check.evaluate(adapters, PROFILE)
    assert check.simulations >= 1 and not verdict.ok
    judged = [o for o in verdict.options if o.prediction.p99_ttft_all_sent_s is not None]
    assert judged and all(o.judgement.short == "SLO ttft_p99" for o in judged)
    # a loose SLO: the same share accepted, each judged option holding the twin's p99
    loose = make_check("auto", PROFILE, rule=rule("ttft_p99:60000", window_s=60.0)).evaluate(adapters, PROFILE)
    assert loose.ok and loose.best.prediction.p99_ttft_all_sent_s is not None


def test_a_share_the_screen_refuses_stays_refused_without_a_twin_run():
    check = make_check("auto", PROFILE, rule=rule("ttft_p99:2000", window_s=60.0))
    verdict = check.evaluate([AdapterSpec(id="hot", rank=8, rate_req_s=500.0)], PROFILE)
    assert not verdict.ok and check.simulations == 0


def test_the_twin_check_and_a_rule_without_slos_need_no_hand_over():
    assert isinstance(make_check("twin", PROFILE, rule=rule("ttft_p99:2000")), TwinCheck)
    assert isinstance(make_check("auto", PROFILE, rule=AcceptanceRule()), CostModelCheck)


def test_the_learned_check_hands_the_slos_over_too():
    check = make_check("learned", PROFILE, rule=rule("tpot_p99:50"))
    assert isinstance(check, TwinJudgesSlos) and check.screen.name == "learned"
    assert "the learned models do not predict p99 TPOT" in check.note


def test_the_lower_bound_is_the_screens():
    adapters = [AdapterSpec(id=f"a{i}", rank=8, rate_req_s=2.0) for i in range(20)]
    r = rule("ttft_p99:2000")
    handed = make_check("auto", PROFILE, rule=r)
    assert lower_bound_gpus(adapters, PROFILE, handed) == lower_bound_gpus(adapters, PROFILE, handed.screen)
    assert handed.simulations == 0


@pytest.mark.parametrize("kind", ["auto", "twin"])
def test_a_slot_grid_limits_the_max_loras_values_tried(kind):
    adapters = [AdapterSpec(id=f"a{i}", rank=8, rate_req_s=0.05) for i in range(20)]
    check = make_check(kind, PROFILE, rule=AcceptanceRule(window_s=60.0), slot_grid=(4, 16))
    tried = {o.max_loras for o in check.evaluate(adapters, PROFILE).options}
    assert tried <= {4, 16, 20} and 16 in tried  # below the share's count, and the count itself
    assert {o.max_loras for o in make_check(kind, PROFILE, rule=AcceptanceRule(window_s=60.0))
            .evaluate(adapters, PROFILE).options} - {4, 16, 20}  # each estimator's own grid by default


@pytest.mark.parametrize(("grid", "message"), [
    ([], "expected a non-empty list of max_loras values"),
    (16, "expected a non-empty list of max_loras values"),
    ("16,32", "expected a non-empty list of max_loras values"),
    ([16, 0], "every max_loras value must be a whole number >= 1, got 0"),
    ([-4], "got -4"),
    ([16.5], "got 16.5"),
    ([float("nan")], "got nan"),
    ([True], "got True"),
    (["32"], "got '32'"),
])
def test_a_slot_grid_that_is_no_list_of_slot_counts_is_refused(grid, message):
    # a max_loras of 16.5 would otherwise reach the vllm serve command; 0 and -4 were dropped unsaid
    with pytest.raises(InputError, match=f"slot_grid: .*{re.escape(message)}"):
        make_check("auto", PROFILE, slot_grid=grid)


def test_a_slot_grid_takes_numpy_integers():
    import numpy as np

    check = make_check("cost-model", PROFILE, slot_grid=np.array([4, 16]))
    assert check.slot_grid == (4, 16) and all(type(v) is int for v in check.slot_grid)
