"""The search after the greedy: moving adapters between GPUs to free GPUs."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from loratwin import AdapterSpec, InputError, load_profile
from loratwin.plan.placement import ShareJudge, place
from loratwin.plan.placement.fill import greedy_bins
from loratwin.plan.placement.search import free_gpus
from loratwin.workload import WorkloadSpec, zipf_layout

from .conftest import capacity_judge, is_partition


def test_a_remainder_gpu_is_emptied_into_the_others():
    rates = [0.5, 0.5, 0.3, 0.3, 0.2, 0.1, 0.1]
    bins = [[0, 2], [1, 3], [4, 5, 6]]  # loads 0.8, 0.8, 0.4: the third fits into the others' room
    found, moves = free_gpus(capacity_judge(rates), rates, bins, max_moves=20)
    assert len(found) == 2 and is_partition(found, len(rates))
    assert all(sum(rates[i] for i in b) <= 1.0 + 1e-12 for b in found)


def test_nothing_moves_when_the_others_have_no_room():
    rates = [0.9, 0.9, 0.9]
    bins = [[0], [1], [2]]
    found, moves = free_gpus(capacity_judge(rates), rates, bins, max_moves=20)
    assert found == bins


def test_the_move_budget_is_kept():
    rates = [0.45] * 4 + [0.01] * 40
    bins = [[0, 1], [2, 3], list(range(4, 44))]
    judge = capacity_judge(rates)
    found, moves = free_gpus(judge, rates, bins, max_moves=1)
    assert moves <= 1 and is_partition(found, len(rates))


@given(st.lists(st.floats(0.01, 0.9), min_size=2, max_size=40), st.floats(0.0, 0.02), st.integers(0, 30))
@settings(max_examples=60, deadline=None)
def test_the_search_keeps_every_adapter_once_and_every_gpu_accepted(rates, per_adapter, max_moves):
    judge = capacity_judge(rates, per_adapter=per_adapter)
    bins, current = [], []
    for i, _ in enumerate(rates):  # first fit in input order, as the greedy fills
        if current and judge([*current, i]).strain > 1:
            bins.append(current)
            current = []
        current.append(i)
    bins.append(current)
    if any(judge(b).strain > 1 for b in bins):
        return  # an adapter that fits nowhere: the greedy refuses such input before the search
    found, moves = free_gpus(judge, rates, bins, max_moves)
    assert is_partition(found, len(rates))
    assert len(found) <= len(bins) and moves <= max_moves
    assert all(judge(b).strain <= 1 for b in found)


def test_place_frees_a_gpu_of_the_greedy_and_every_gpu_stays_accepted():
    """Ten busy adapters: the greedy fills two GPUs and leaves a remainder of one adapter for a
    third; the other two take it, as the exact search finds."""
    profile = load_profile("llama-3.1-8b-instruct")
    specs = [("a0", 16, 3.89), ("a1", 8, 12.0), ("a2", 32, 12.0), ("a3", 16, 12.0), ("a4", 32, 12.0),
             ("a5", 32, 6.655), ("a6", 32, 1.902), ("a7", 8, 4.982), ("a8", 32, 8.454), ("a9", 8, 1.784)]
    workload = WorkloadSpec(adapters=tuple(AdapterSpec(id=i, rank=r, rate_req_s=x) for i, r, x in specs))
    alone = place(workload, profile, search_moves=0)
    searched = place(workload, profile)
    assert (alone.gpu_count, searched.gpu_count) == (3, 2)
    assert searched.gpu_count == place(workload, profile, algorithm="exact").gpu_count
    assert any("freed 1" in note for note in searched.notes) and not any("freed" in note for note in alone.notes)
    assert searched.refused_gpus == []
    assert sorted(a.id for g in searched.gpus for a in g.adapters) == sorted(a.id for a in workload.adapters)
    # deterministic: the same moves again, and --gpus 2 is reachable only with the search
    again = place(workload, profile, gpus=2)
    assert [[a.id for a in g.adapters] for g in again.gpus] == [[a.id for a in g.adapters] for g in searched.gpus]
    with pytest.raises(InputError, match="3"):
        place(workload, profile, gpus=2, search_moves=0)


def test_search_moves_must_be_a_count():
    profile = load_profile("llama-3.1-8b-instruct")
    with pytest.raises(InputError, match="--search-moves"):
        place(zipf_layout(5, 1.0, 1.0, ranks=(8,), seed=0), profile, search_moves=-1)


def test_the_greedy_judge_memo_is_what_the_search_uses():
    profile = load_profile("llama-3.1-8b-instruct")
    items = list(zipf_layout(300, 40.0, 1.0, ranks=(8, 16), seed=2).adapters)
    from loratwin.plan.judge import CostModelCheck

    judge = ShareJudge(CostModelCheck(), profile, items)
    bins = greedy_bins(judge)
    found, _ = free_gpus(judge, [a.rate_req_s for a in items], bins, 30)
    assert all(judge(b).ok for b in found) and is_partition(found, len(items))


@pytest.mark.slow
@given(st.integers(2, 200), st.floats(1.0, 80.0), st.floats(0.5, 1.5), st.integers(0, 10_000))
@settings(max_examples=15, deadline=None)
def test_place_with_the_search_never_needs_more_gpus_and_keeps_every_gpu_accepted(n, total, exponent, seed):
    profile = load_profile("llama-3.1-8b-instruct")
    workload = zipf_layout(n, total, exponent, ranks=(8, 16, 32), seed=seed)
    try:
        alone = place(workload, profile, search_moves=0)
    except InputError:
        assume(False)  # its busiest adapter does not fit on one GPU: refused before any placement
    searched = place(workload, profile)
    assert searched.gpu_count <= alone.gpu_count
    assert searched.refused_gpus == []
    assert sorted(a.id for g in searched.gpus for a in g.adapters) == sorted(a.id for a in workload.adapters)
