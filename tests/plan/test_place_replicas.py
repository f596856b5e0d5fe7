"""Replicas: an adapter too busy for one GPU split over several, the routing table, the lower
bound that allows splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loratwin import AdapterSpec, InputError
from loratwin.plan.bound import cost_model as place_bound
from loratwin.plan.bound import lower_bound_gpus
from loratwin.plan.bound.splits import split_places
from loratwin.plan.judge import AcceptanceRule, CostModelCheck, GpuCheck, Prediction, adapter_server_rank
from loratwin.plan.judge.rule import Judgement
from loratwin.plan.judge.verdict import GpuVerdict, SlotOption, judge_by_list
from loratwin.plan.placement import ALGORITHMS, place
from loratwin.plan.placement.replicas import replica_count, split_busy
from loratwin.workload import WorkloadSpec

PROFILE = "llama-3.1-8b-instruct"
CAPACITY = 14.8  # req/s one GPU carries under the total-rate check


class TotalRate:
    """A GPU is accepted while its total rate is within CAPACITY (a fast stand-in estimator)."""

    name = "total-rate"
    rule = AcceptanceRule()
    fast = True

    def evaluate(self, adapters, profile):
        total = sum(a.rate_req_s for a in adapters)
        judgement = Judgement(total <= CAPACITY, total / CAPACITY, f"total rate {total:g} of {CAPACITY} req/s allowed")
        return GpuVerdict(len(adapters), 8, total, (SlotOption(Prediction(1, total), judgement),))

    def share_judge(self, adapters, profile):
        return judge_by_list(self, adapters, profile)


def alone(adapter: AdapterSpec) -> GpuVerdict:
    return TotalRate().evaluate([adapter], None)


def never(adapter, verdict):
    return InputError(f"refused {adapter.id}")


def routed_rates(placement) -> dict[str, float]:
    rates: dict[str, float] = {}
    for g in placement.gpus:
        for a in g.adapters:
            rates[a.id] = rates.get(a.id, 0.0) + a.rate_req_s
    return rates


def test_the_fewest_replicas_each_one_gpu_accepts():
    assert isinstance(TotalRate(), GpuCheck)
    hot = AdapterSpec(id="hot", rank=8, rate_req_s=40.0)
    assert replica_count(hot, alone, never) == 3  # 40/2 = 20 > 14.8 >= 40/3
    assert replica_count(hot.model_copy(update={"rate_req_s": 29.6}), alone, never) == 2  # exactly at capacity
    assert replica_count(hot.model_copy(update={"rate_req_s": 1000.0}), alone, never) == math.ceil(1000 / CAPACITY)


def test_only_adapters_refused_alone_are_split_each_replica_carrying_its_weight():
    adapters = [AdapterSpec(id="a", rank=8, rate_req_s=40.0), AdapterSpec(id="b", rank=8, rate_req_s=3.0),
                AdapterSpec(id="c", rank=16, rate_req_s=15.0)]
    split = split_busy(adapters, alone, never)
    assert split.replicas == {"a": 3, "c": 2}
    assert [a.id for a in split.items] == ["a", "a", "a", "b", "c", "c"]
    for name, whole in (("a", 40.0), ("c", 15.0)):
        weights = [w for a, w in zip(split.items, split.weights) if a.id == name]
        assert math.fsum(weights) == pytest.approx(1.0)
        assert all(a.rate_req_s == pytest.approx(whole * w) for a, w in zip(split.items, split.weights) if a.id == name)
    assert all(alone(a).ok for a in split.items)


def test_a_placement_puts_replicas_on_different_gpus_every_one_accepted(profile):
    adapters = [AdapterSpec(id="huge", rank=8, rate_req_s=120.0), *(AdapterSpec(id=f"s{i}", rank=8, rate_req_s=0.3)
                                                                  for i in range(6))]
    placement = place(adapters, profile)
    routes = placement.routing["huge"]
    assert len(routes) >= 3 and math.fsum(routes.values()) == pytest.approx(1.0)
    holding = [g for g in placement.gpus if any(a.id == "huge" for a in g.adapters)]
    assert sorted(g.index for g in holding) == sorted(routes)  # one replica per GPU
    assert all(g.accepted for g in placement.gpus)
    assert all(placement.routing[f"s{i}"] in ({g: 1.0} for g in range(placement.gpu_count)) for i in range(6))
    assert any("split into replicas" in note for note in placement.notes)
    doc = placement.to_dict()
    assert doc["routing"] == placement.routing and doc["adapters"] == 7 and doc["replicated_adapters"] == 1
    for g in doc["gpus"]:
        assert len(g["adapter_rates_req_s"]) == len(g["adapters"])
        assert math.fsum(g["adapter_rates_req_s"]) == pytest.approx(g["rate_req_s"])


def test_the_greedy_fills_a_replicas_gpu_with_other_adapters(profile):
    # two replicas at 10 req/s and eight quiet adapters (4 req/s): two GPUs, the quiet ones beside a replica
    adapters = [AdapterSpec(id="hot", rank=8, rate_req_s=20.0),
                *(AdapterSpec(id=f"q{i}", rank=8, rate_req_s=0.5) for i in range(8))]
    placement = place(adapters, profile, check=TotalRate(), search_moves=0)
    assert placement.gpu_count == placement.lower_bound == 2
    assert placement.routing["hot"] == {0: 0.5, 1: 0.5}


def test_an_adapter_refused_even_without_traffic_is_still_refused(profile):
    class NothingStarts(TotalRate):
        def evaluate(self, adapters, profile):
            return GpuVerdict(len(adapters), None, 0.0, (), "out of memory at every max_loras")

    with pytest.raises(InputError, match="'a'.*cannot be placed on one GPU.*out of memory.*No number of GPUs or "
                                         "replicas serves it"):
        place([AdapterSpec(id="a", rank=8, rate_req_s=30.0)], profile, check=NothingStarts())


@given(rates=st.lists(st.floats(0.0, 60.0), min_size=1, max_size=30), ranks=st.lists(st.sampled_from([8, 16, 32]),
       min_size=30, max_size=30), algorithm=st.sampled_from(sorted(set(ALGORITHMS) - {"exact"})))
@settings(max_examples=40, deadline=None)
def test_routing_is_complete_and_every_gpu_carries_its_share(profile, rates, ranks, algorithm):
    adapters = [AdapterSpec(id=f"a{i}", rank=ranks[i], rate_req_s=r) for i, r in enumerate(rates)]
    placement = place(WorkloadSpec(adapters=adapters), profile, algorithm=algorithm, check=TotalRate())
    assert set(placement.routing) == {a.id for a in adapters}
    for gpus in placement.routing.values():
        assert math.fsum(gpus.values()) == pytest.approx(1.0)
    for g in placement.gpus:
        ids = [a.id for a in g.adapters]
        assert len(ids) == len(set(ids))  # no adapter twice on one GPU
        assert g.accepted
        for a in g.adapters:
            assert placement.routing[a.id][g.index] > 0
    carried = routed_rates(placement)
    for a in adapters:
        assert carried[a.id] == pytest.approx(a.rate_req_s)
    total = math.fsum(g.rate_req_s for g in placement.gpus)
    assert total == pytest.approx(math.fsum(rates))
    assert placement.gpu_count >= placement.lower_bound


@given(t=st.floats(0.5, 60.0), wait=st.floats(0.0, 600.0), slots=st.integers(1, 64),
       rates=st.lists(st.floats(0.001, 50.0), min_size=2, max_size=40, unique=True))
@settings(max_examples=60, deadline=None)
def test_split_places_lie_below_and_fall_per_request(profile, t, wait, slots, rates):
    moments = CostModelCheck().moments(profile)
    lam = np.sort(np.array(rates))
    t_lo, w_max = np.array([t]), np.array([wait])
    cost = split_places(t_lo, w_max, lam, slots, moments)[0]
    # the saturated places cost itself (bound.cost_model)
    rho = np.minimum(t * lam, 700.0)
    busy = np.expm1(rho) / lam + t * moments.batch_extra(moments.locate(rho), wait * lam)[0]
    whole = busy / (1 / lam + wait + busy) / slots
    assert np.all(cost <= whole * (1 + 1e-9))
    assert np.all(np.diff(cost / lam) <= 1e-12 * cost[:-1] / lam[:-1] + 1e-15)  # per request: nonincreasing
    assert np.all(np.diff(cost) >= -1e-12)  # and the cost itself grows with the rate


def test_every_class_cost_per_request_falls_with_the_rate_only_when_splits_are_allowed(profile):
    """What makes the bound hold for split adapters: in every class, each cost over the rate
    never rises with the rate (two pieces cost at least the whole)."""
    check = CostModelCheck()
    lam = np.geomspace(0.01, 60.0, 80)
    need = np.full(len(lam), 8.0)

    def worst_rise(splits: bool) -> float:
        costs = place_bound._class_costs(check, need, lam, 500, profile, splits)
        rise = 0.0
        for cost in (costs.time, costs.places, costs.band):
            per = cost / lam
            finite = np.isfinite(per).all(axis=1)
            rise = max(rise, float(np.max(np.diff(per[finite], axis=1) / per[finite][:, :-1])))
        return rise

    assert worst_rise(True) <= 1e-9
    assert worst_rise(False) > 0.01  # the saturated places are S-shaped: splitting a busy adapter lowers them


@pytest.mark.slow
def test_the_bound_with_splits_holds_for_a_split_placement(profile):
    """The fractional bound of the adapters whole is at most the GPUs a placement with replicas
    uses, and at most the sum of its GPUs' own bounds (each at most 1: every GPU is accepted)."""
    check = CostModelCheck()
    adapters = [AdapterSpec(id="huge", rank=16, rate_req_s=90.0),
                *(AdapterSpec(id=f"s{i}", rank=8, rate_req_s=2.0 / (i + 1)) for i in range(40))]
    placement = place(adapters, profile, check=check)
    assert len(placement.routing["huge"]) >= 2

    def fractional(share):
        need = np.array([adapter_server_rank(profile, a) for a in share], np.float64)
        return place_bound.cost_model_lower_bound(check, np.array([a.rate_req_s for a in share]), need, profile)

    per_gpu = [fractional(g.adapters) for g in placement.gpus]
    assert max(per_gpu) <= 1 + 1e-6
    assert fractional(adapters) <= math.fsum(per_gpu) + 1e-6
    assert lower_bound_gpus(adapters, profile, check) <= placement.gpu_count
