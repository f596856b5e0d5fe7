"""The published method's grid scoring (`loratwin.learn.score`), which `train --tune` uses."""

from __future__ import annotations

import numpy as np

from loratwin.learn.bundle import load_model_set
from loratwin.learn.features import AdapterMix
from loratwin.learn.score import candidate_counts, choose, score_candidates
from loratwin.profiles import load_profile
from loratwin.workload import ShareGPTLengths


def test_candidates_cover_the_grid_up_to_the_list_and_the_list_itself():
    pairs = candidate_counts(100)
    assert (100, 96) in pairs and (100, 100) in pairs and (96, 96) in pairs
    assert all(s <= 100 and m <= s for s, m in pairs)
    assert candidate_counts(3) == [(1, 1), (2, 2), (3, 3)]


def test_quiet_adapters_all_fit_on_one_gpu_by_the_grid_scoring():
    profile = load_profile("llama-3.1-8b-instruct")
    models = load_model_set(profile.name)
    prompt, output = ShareGPTLengths().means(profile.tokenizer or profile.name)
    mix = AdapterMix(np.array([0.01, 0.005] * 32), np.array([8.0, 16.0] * 32), prompt, output)
    candidates, rows = score_candidates(mix, profile, models.model("total_tok_s"), models.model("starved"),
                                        candidate_counts(64))
    assert candidates and len(rows) == len(candidates)
    best = choose(candidates)
    assert best is not None and best.served == 64 and best.max_loras <= 64
    assert best.starved_probability < 0.5 and not best.predicted_starved
    assert 0 < best.predicted_total_tok_s <= 1.05 * best.offered_tok_s
    # nothing is chosen when every candidate is predicted to starve
    assert choose(candidates, max_starved_p=0.0) is None
