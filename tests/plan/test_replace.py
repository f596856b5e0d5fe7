"""Re-placement: adapters stay where the rule allows; the fewest move off refused GPUs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loratwin import AdapterSpec, InputError
from loratwin.plan.placement import ShareJudge, place
from loratwin.plan.placement.moves import gpus_of, load_ms, match_gpus, renamed
from loratwin.plan.placement.place import default_check
from loratwin.plan.placement.replace import fewest_off, replace
from loratwin.workload import WorkloadSpec, zipf_layout

PROFILE = "llama-3.1-8b-instruct"


@pytest.fixture(scope="module")
def placed(zipf60, profile):
    return place(zipf60, profile)


def scaled(workload, ids, factor):
    return [a.model_copy(update={"rate_req_s": a.rate_req_s * factor}) if a.id in ids else a for a in workload.adapters]


def assert_each_once(result, adapters):
    """Every adapter on its GPUs once each, its weights summing to 1; every GPU accepted."""
    placement = result.placement
    assert sorted(placement.routing) == sorted(a.id for a in adapters)
    for adapter_id, route in placement.routing.items():
        assert sum(route.values()) == pytest.approx(1.0)
        held = [g.index for g in placement.gpus for a in g.adapters if a.id == adapter_id]
        assert sorted(held) == sorted(route), "once on each of its GPUs, nowhere else"
    rates = {a.id: a.rate_req_s for a in adapters}
    for g in placement.gpus:
        for a in g.adapters:
            assert a.rate_req_s == pytest.approx(rates[a.id] * placement.routing[a.id][g.index])
    assert all(g.accepted for g in placement.gpus)


def test_an_unchanged_workload_moves_nothing(placed, zipf60, profile):
    result = replace(placed, zipf60, profile)
    assert result.moves == [] and result.added == [] and result.dropped == [] and result.restarts == []
    assert result.placement.assignment() == placed.assignment()
    assert result.chosen == "kept"


def test_one_overloaded_gpu_moves_only_its_adapters_and_the_fewest(placed, zipf60, profile):
    first = placed.gpus[0]
    adapters = scaled(zipf60, {a.id for a in first.adapters}, 1.6)
    result = replace(placed, adapters, profile)
    assert result.refused == [first.index]
    assert result.moves and {m.from_gpu for m in result.moves} == {first.index}
    assert_each_once(result, adapters)
    # one adapter fewer taken off (the hottest ones: they relieve a GPU most) is refused
    judge = ShareJudge(default_check(profile, WorkloadSpec(adapters=tuple(adapters))), profile, adapters)
    index = {a.id: i for i, a in enumerate(adapters)}
    members = sorted((index[a.id] for a in first.adapters), key=lambda i: -adapters[i].rate_req_s)
    assert not judge.ok(members[len(result.moves) - 1:])
    assert result.fresh_moves >= len(result.moves)
    for m in result.moves:
        target = next(g for g in result.placement.gpus if g.index == m.to_gpu)
        assert m.load_ms == pytest.approx(load_ms(profile, target.max_lora_rank, m.rank)) and m.load_ms > 0


def test_a_vanished_adapter_is_dropped_without_a_move(placed, zipf60, profile):
    gone = zipf60.adapters[5].id
    result = replace(placed, [a for a in zipf60.adapters if a.id != gone], profile)
    assert result.dropped == [gone] and result.moves == [] and result.added == []
    assert gone not in result.placement.assignment()


def test_new_adapters_are_placed_and_cost_their_loads(placed, zipf60, profile):
    new = [AdapterSpec(id=f"new-{k}", rank=16, rate_req_s=0.2) for k in range(3)]
    result = replace(placed, [*zipf60.adapters, *new], profile)
    assert result.moves == []
    assert sorted(m.adapter for m in result.added) == [a.id for a in new]
    assert all(m.from_gpu is None and m.load_ms > 0 for m in result.added)
    assert_each_once(result, [*zipf60.adapters, *new])


def test_a_gpu_keeps_its_max_loras_where_the_rule_still_accepts_it(placed, zipf60, profile):
    adapters = scaled(zipf60, {zipf60.adapters[-1].id}, 0.5)  # a quiet adapter quieter: nothing to restart
    result = replace(placed, adapters, profile)
    assert [(g.index, g.max_loras) for g in result.placement.gpus] == [(g.index, g.max_loras) for g in placed.gpus]
    assert result.restarts == []


def test_a_placement_for_another_profile_is_refused(placed, zipf60):
    with pytest.raises(InputError, match="profile 'llama-3.1-8b-instruct', not 'qwen-2.5-7b-instruct'"):
        replace(placed, zipf60, "qwen-2.5-7b-instruct")


def test_fewest_off_prefers_the_cold_adapters_at_the_same_count(profile):
    # a hot adapter with as many cold ones as a GPU takes, plus one: taking off the hot adapter or a
    # cold one both leave an accepted GPU; the cold one moves
    hot = AdapterSpec(id="hot", rank=8, rate_req_s=3.0)
    cold = [AdapterSpec(id=f"c{i:03d}", rank=8, rate_req_s=0.4) for i in range(200)]
    adapters = [hot, *cold]
    judge = ShareJudge(default_check(profile, WorkloadSpec(adapters=tuple(adapters))), profile, adapters)
    fits = max(k for k in range(1, 200) if judge.ok([0, *range(1, k + 1)]))
    members = [0, *range(1, fits + 2)]
    assert not judge.ok(members) and judge.ok(members[1:]), "the hot adapter alone would do as well"
    kept, off = fewest_off(judge, members)
    assert len(off) == 1 and adapters[off[0]].id.startswith("c") and 0 in kept
    assert judge.ok(kept)


def test_fresh_gpus_are_matched_to_the_old_ones_keeping_the_most_adapters(placed):
    import dataclasses

    shuffled = dataclasses.replace(placed, gpus=[dataclasses.replace(g, index=90 + k)
                                                 for k, g in enumerate(reversed(placed.gpus))], routing=None)
    gpus, routing = renamed(shuffled, match_gpus(gpus_of(placed), shuffled, 50))
    assert [(g.index, [a.id for a in g.adapters]) for g in gpus] == \
        [(g.index, [a.id for a in g.adapters]) for g in placed.gpus]
    assert routing == placed.routing


@pytest.mark.slow
def test_replicas_keep_their_gpus_and_a_busier_adapter_gets_more(profile):
    workload = zipf_layout(40, 200.0, 1.0, ranks=(8, 16), seed=1)  # its busiest adapter needs 2 replicas
    old = place(workload, profile)
    hottest = workload.adapters[0].id
    assert len(old.routing[hottest]) >= 2
    calmer = scaled(workload, {hottest}, 0.9)
    result = replace(old, calmer, profile)
    assert result.placement.routing[hottest].keys() == old.routing[hottest].keys()
    assert all(m.adapter != hottest for m in result.moves)
    assert_each_once(result, calmer)
    busier = scaled(workload, {hottest}, 3.0)
    result = replace(old, busier, profile)
    assert_each_once(result, busier)
    gpus = result.placement.routing[hottest]
    assert set(old.routing[hottest]) <= set(gpus) and len(gpus) > len(old.routing[hottest])
    added = [m for m in result.moves if m.adapter == hottest]
    if result.chosen == "kept":
        assert len(added) == len(gpus) - len(old.routing[hottest]) and all(m.from_gpu is None for m in added)
    assert len(result.moves) <= result.fresh_moves


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(3, 50), total=st.floats(2.0, 90.0),
       hot=st.floats(0.0, 1.0), factor=st.floats(1.0, 4.0), dropped=st.integers(0, 3), new=st.integers(0, 3))
def test_every_adapter_once_every_gpu_accepted_and_no_more_moves_than_fresh(seed, n, total, hot, factor, dropped,
                                                                            new, profile):
    import random

    workload = zipf_layout(n, total, 1.0, ranks=(8, 16, 32), seed=seed)
    old = place(workload, profile)
    rng = random.Random(seed)
    ids = {a.id for a in rng.sample(workload.adapters, round(hot * n))}
    adapters = [a for a in scaled(workload, ids, factor) if a.id not in {f"lora-{n - 1 - k}" for k in range(dropped)}]
    adapters += [AdapterSpec(id=f"new-{k}", rank=rng.choice((8, 16, 32)), rate_req_s=rng.uniform(0.01, 2)) for k in range(new)]
    try:
        result = replace(old, adapters, profile)
    except InputError as err:  # only an adapter no replicas serve is refused
        assert "No number of GPUs or replicas serves it" in str(err)
        return
    assert_each_once(result, adapters)
    assert len(result.moves) <= result.fresh_moves
    if result.chosen == "kept":  # GPUs the rule accepts under the new rates keep all their adapters
        for g in old.gpus:
            if g.index not in result.refused:
                still = {a.id for a in adapters}
                assert {a.id for a in g.adapters} & still <= set(result.placement.assignment()) and all(
                    result.placement.assignment()[a.id] == g.index for a in g.adapters if a.id in still)
