"""recommend and place give one answer: recommending for one GPU is placing on one GPU."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loratwin import AdapterSpec
from loratwin.plan import AcceptanceRule, place, recommend
from loratwin.plan.judge import CostModelCheck, Prediction
from loratwin.workload import WorkloadSpec

PROFILE = "llama-3.1-8b-instruct"


def random_list(seed: int, n: int, total_rate: float) -> WorkloadSpec:
    """n adapters with Zipf-like rates adding up to `total_rate` req/s and mixed ranks."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n + 1) ** rng.uniform(0.0, 1.5)
    rates = rng.permutation(weights / weights.sum() * total_rate)
    ranks = rng.choice([8, 16, 32], size=n, p=rng.dirichlet(np.ones(3)))
    return WorkloadSpec(adapters=tuple(AdapterSpec(id=f"a{i}", rank=int(r), rate_req_s=float(round(x, 4)) or 0.001)
                                       for i, (r, x) in enumerate(zip(ranks, rates))))


def assert_agree(workload: WorkloadSpec, profile, keep_order: bool = False) -> None:
    rec = recommend(workload, profile, keep_order=keep_order, published=False)
    everything = place(workload, profile)
    assert (rec.served == len(workload.adapters)) == (everything.gpu_count == 1)
    chosen = [a for a in workload.adapters if a.id in set(rec.served_adapter_ids)]
    alone = place(chosen, profile)
    assert alone.gpu_count == 1
    assert alone.gpus[0].max_loras == rec.max_loras
    assert alone.gpus[0].max_lora_rank == rec.max_lora_rank
    assert rec.accepted and alone.gpus[0].accepted


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(2, 260), total=st.floats(1.0, 80.0), keep_order=st.booleans())
def test_recommend_and_place_agree_on_random_lists(profile, seed, n, total, keep_order):
    assert_agree(random_list(seed, n, total), profile, keep_order)


def test_the_quickstart_list_gets_one_answer(profile):
    from loratwin.plan import read_adapters_csv
    from loratwin.plan.inputs import QUICKSTART_CSV

    workload = read_adapters_csv(QUICKSTART_CSV)
    rec = recommend(workload, profile, published=False)
    placement = place(workload, profile)
    assert rec.served == len(placement.gpus[0].adapters)
    assert rec.max_loras == placement.gpus[0].max_loras
    assert_agree(workload, profile)


def test_a_verdict_names_the_limit_that_decides_it_and_its_margin(profile):
    rule = AcceptanceRule(max_wait_s=60)
    judgement = rule.judge(Prediction(8, 1000.0, slot_wait_s=55.0, kv_queue_s=2.0, utilisation=0.5), profile)
    assert judgement.accepted
    assert judgement.deciding == "mean wait for a batch slot 55.0 s of 60.0 s allowed"
    assert judgement.pressure == pytest.approx(55 / 60)
    refused = rule.judge(Prediction(8, 1000.0, slot_wait_s=5.0, utilisation=0.97), profile)
    assert not refused.accepted
    assert refused.deciding == "use of KV cache, sequences or token budget 97.0% of 95.0% allowed"


def test_the_starvation_limits_refuse_at_the_threshold_as_the_published_rule_does(profile):
    rule = AcceptanceRule()
    assert not rule.judge(Prediction(8, 1.0, shortfall=0.1), profile).accepted
    assert rule.judge(Prediction(8, 1.0, shortfall=0.0999), profile).accepted
    assert not rule.judge(Prediction(8, 1.0, starved_probability=0.5), profile).accepted


def test_a_quantity_an_estimator_does_not_predict_is_not_judged(profile):
    judgement = AcceptanceRule(max_wait_s=1.0).judge(Prediction(8, 1.0), profile)
    assert judgement.accepted and judgement.pressure == 0.0


def test_without_a_wait_limit_waits_are_not_judged(profile):
    rule = AcceptanceRule(max_wait_s=None)
    assert rule.judge(Prediction(8, 1.0, slot_wait_s=1e6, mean_ttft_s=1e6), profile).accepted


def test_the_kv_use_limit_is_the_profiles_unless_the_rule_sets_one(profile):
    assert AcceptanceRule().kv_use_limit(profile) == profile.placement.stable_kv_use
    assert AcceptanceRule(max_kv_use=0.8).kv_use_limit(profile) == 0.8


def test_the_cost_model_is_judged_by_its_rule(profile):
    adapters = [AdapterSpec(id=f"a{i}", rank=8, rate_req_s=0.05) for i in range(150)]
    strict = CostModelCheck(rule=AcceptanceRule(max_wait_s=40.0)).evaluate(adapters, profile)
    loose = CostModelCheck(rule=AcceptanceRule(max_wait_s=None)).evaluate(adapters, profile)
    # 150 quiet adapters wait for one of a few slots: a 40 s wait limit refuses the fewest slots
    assert {o.max_loras for o in strict.options if o.accepted} < {o.max_loras for o in loose.options if o.accepted}
    for option in strict.options:
        if not option.accepted and option.prediction.slot_wait_s > 0:
            assert option.deciding.startswith(("mean wait for a batch slot", "mean wait for KV cache admission"))
