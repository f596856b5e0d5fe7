"""Evening out a placement on a fixed number of GPUs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loratwin.plan.placement import place
from loratwin.plan.placement.balance import EVEN_GAP, even_out
from loratwin.workload import zipf_layout

from .conftest import capacity_judge, is_partition


def test_a_remainder_gpu_takes_half_the_load_of_a_full_one():
    rates = [1.0] * 20
    judge = capacity_judge(rates, capacity=20.0)
    bins, moves = even_out(judge, [list(range(18)), [18, 19]], max_moves=10)
    assert is_partition(bins, 20)
    assert sorted(len(b) for b in bins) == [10, 10] and moves == 1


@given(st.lists(st.floats(0.01, 5.0), min_size=2, max_size=40), st.integers(2, 6), st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_evening_out_keeps_every_adapter_and_never_raises_the_highest_strain(rates, gpus, seed):
    import random

    order = list(range(len(rates)))
    random.Random(seed).shuffle(order)
    cuts = sorted(random.Random(seed + 1).sample(range(1, len(rates)), min(gpus, len(rates)) - 1))
    bins = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(rates)])]
    judge = capacity_judge(rates, capacity=10.0, per_adapter=0.01)
    before = [judge(b).strain for b in bins]
    after_bins, moves = even_out(judge, bins, max_moves=20)
    after = [judge(b).strain for b in after_bins]
    assert is_partition(after_bins, len(rates)) and all(after_bins)
    assert max(after) <= max(before) + 1e-12
    assert max(after) - min(after) <= max(before) - min(before) + 1e-12
    if moves < 20:  # it stopped by itself: what it returns is where it would stop again
        assert even_out(judge, after_bins, max_moves=20) == (after_bins, 0)
    if max(before) - min(before) < EVEN_GAP:
        assert moves == 0


@pytest.mark.slow
def test_place_on_a_fixed_count_leaves_no_remainder_gpu():
    # spread alone leaves one of the five GPUs at a pressure 0.16 below the others'
    workload = zipf_layout(400, 80.0, 1.0, ranks=(8, 16, 32), seed=2)
    fewest = place(workload, "llama-3.1-8b-instruct")
    spread = place(workload, "llama-3.1-8b-instruct", gpus=fewest.gpu_count + 1)
    pressures = [g.pressure for g in spread.gpus]
    assert spread.gpu_count == fewest.gpu_count + 1
    assert all(g.accepted for g in spread.gpus)
    assert max(pressures) - min(pressures) < 0.08, pressures
