"""The published method's grid scoring: the per-configuration models score every (served,
max_loras) pair of the training grid, and the best pair predicted not to starve is chosen.
`tune` picks the probability cut on twin data with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loratwin.errors import InfeasibleConfigError
from loratwin.learn.evaluators import predict, predict_target
from loratwin.learn.features import AdapterMix, as_matrix, config_features
from loratwin.profiles import Profile
from loratwin.validate.ml_test import GRID_COUNTS

# Served counts and slot counts considered: the training grid's, plus the length of the list.
SMALL_COUNTS = (1, 2, 4, 8)
DEFAULT_MAX_STARVED_P = 0.5


@dataclass
class Candidate:
    served: int
    max_loras: int
    predicted_total_tok_s: float
    starved_probability: float
    offered_tok_s: float

    @property
    def predicted_starved(self) -> bool:
        return self.starved_probability >= 0.5


def candidate_counts(n_adapters: int) -> list[tuple[int, int]]:
    """(served, max_loras) pairs to score: grid counts up to the list's length, and the length itself."""
    served_values = sorted({c for c in GRID_COUNTS + SMALL_COUNTS if c <= n_adapters} | {n_adapters})
    pairs = []
    for served in served_values:
        slots = sorted({c for c in GRID_COUNTS if c <= served} | ({served} if served < GRID_COUNTS[0] or served not in GRID_COUNTS and served <= GRID_COUNTS[-1] else set()))
        pairs += [(served, s) for s in slots]
    return pairs


def _feasible(profile: Profile, max_loras: int, max_lora_rank: int) -> bool:
    try:
        profile.kv.tokens(max_loras, max_lora_rank)
    except InfeasibleConfigError:
        return False
    return True


def score_candidates(
    mix: AdapterMix, profile: Profile, throughput_model: dict[str, Any], starvation_model: dict[str, Any],
    pairs: Sequence[tuple[int, int]],
) -> tuple[list[Candidate], list[dict[str, float]]]:
    """Predicted throughput and starvation probability of each pair that can start, and their feature rows."""
    rows, kept = [], []
    for served, max_loras in pairs:
        head = mix.head(served)
        rank = int(head.ranks.max())
        if not _feasible(profile, max_loras, rank):
            continue
        rows.append(config_features(head, max_loras, rank))
        kept.append((served, max_loras))
    if not rows:
        return [], []
    throughput = predict_target(throughput_model, as_matrix(rows, throughput_model["features"]))
    starved_p = predict(starvation_model, as_matrix(rows, starvation_model["features"]))
    return [
        Candidate(s, m, float(t), float(p), float(row["offered_tok_s"]))
        for (s, m), t, p, row in zip(kept, throughput, starved_p, rows, strict=True)
    ], rows


def choose(candidates: Sequence[Candidate], max_starved_p: float = DEFAULT_MAX_STARVED_P) -> Candidate | None:
    """Highest predicted throughput among the candidates not predicted to starve; ties: fewer slots."""
    safe = [c for c in candidates if c.starved_probability < max_starved_p]
    if not safe:
        return None
    return max(safe, key=lambda c: (round(c.predicted_total_tok_s, 6), -c.max_loras, -c.served))
