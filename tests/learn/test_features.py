"""Features: the published statistics, the mix features, and the configuration features."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.learn.features import (
    CONFIG_FEATURES,
    WORKLOAD_FEATURES,
    AdapterMix,
    as_matrix,
    config_features,
    workload_features,
)


def mix(rates, ranks, prompt=200.0, output=100.0):
    return AdapterMix(np.array(rates, float), np.array(ranks, float), prompt, output)


def test_paper_statistics_of_a_cycling_layout_equal_those_of_the_triples():
    m = AdapterMix.cycling(384, [0.8, 0.4, 0.05], [8, 8, 32], 200.0, 100.0)
    f = workload_features(m)
    levels = np.array([0.8, 0.4, 0.05])
    assert f["rate_level_max"] == 0.8 and f["rate_level_min"] == 0.05
    assert f["rate_level_mean"] == pytest.approx(levels.mean())
    assert f["rate_level_std"] == pytest.approx(levels.std())
    assert f["rank_mean"] == pytest.approx(np.mean([8, 8, 32]))
    assert f["rank_std"] == pytest.approx(np.std([8, 8, 32]))
    assert (f["rank_max"], f["rank_min"]) == (32, 8)
    assert f["rank_share_le8"] == pytest.approx(2 / 3) and f["rank_share_le32"] == pytest.approx(1 / 3)
    assert f["rank_share_le16"] == 0 and f["rank_share_gt32"] == 0
    assert list(f) == WORKLOAD_FEATURES


def test_mix_features_weight_by_adapter_count_and_offered_load_uses_mean_lengths():
    m = mix([1.0, 0.0, 0.0, 0.0], [8, 16, 16, 64])
    f = config_features(m, max_loras=2)
    assert f["rate_level_mean"] == pytest.approx(0.5)  # two distinct levels
    assert f["rate_mean"] == pytest.approx(0.25)  # four adapters
    assert f["busiest_tenth_rate_share"] == pytest.approx(1.0)
    assert f["load_weighted_rank"] == pytest.approx(8.0)
    assert f["offered_req_s"] == pytest.approx(1.0)
    assert f["offered_tok_s"] == pytest.approx(300.0)
    assert f["max_lora_rank"] == 64 and f["served"] == 4 and f["max_loras"] == 2
    assert f["slots_per_adapter"] == pytest.approx(0.5)
    assert f["offered_tok_s_per_slot"] == pytest.approx(150.0)
    assert f["rank_share_gt32"] == pytest.approx(0.25)
    assert list(f) == CONFIG_FEATURES


def test_features_do_not_depend_on_the_order_of_the_adapters():
    rng = np.random.default_rng(0)
    rates, ranks = rng.uniform(0, 1, 50), rng.choice([8, 16, 32], 50)
    order = rng.permutation(50)
    a = config_features(mix(rates, ranks), 16)
    b = config_features(mix(rates[order], ranks[order]), 16)
    assert a == pytest.approx(b)


def test_head_keeps_the_first_adapters_and_the_lengths():
    m = mix([3, 2, 1], [8, 16, 32], prompt=10, output=20)
    h = m.head(2)
    assert list(h.rates_req_s) == [3, 2] and list(h.ranks) == [8, 16]
    assert h.tokens_per_request == 30


def test_a_mix_needs_matching_non_empty_arrays():
    with pytest.raises(ValueError):
        mix([], [])
    with pytest.raises(ValueError):
        mix([1, 2], [8])


def test_as_matrix_orders_columns_by_name():
    X = as_matrix([{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}], ["b", "a"])
    assert X.tolist() == [[2.0, 1.0], [4.0, 3.0]]
