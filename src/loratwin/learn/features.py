"""Features of a workload (a list of adapters) and of a server configuration serving part of it.

Two families, both computed from nothing but the adapters' rates and ranks and the mean request
lengths, so a user's arbitrary list scores the same way as a grid workload:

- the published method's: max / min / mean / std of the rate levels (distinct rates) and of the
  ranks (over adapters: for a layout cycling a rank triple this equals the triple's statistics);
- mix features that carry over to any list: count-weighted rate statistics, how concentrated the
  load is, rank shares, mean prompt and output lengths, offered load in req/s and tok/s.

Optimum models see the mix of the whole candidate list (the pool); per-configuration models see
the adapters actually served, their total offered load, and the server flags.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Shares of adapters by rank: up to 8, 9-16, 17-32, above 32.
RANK_SHARE_BOUNDS = (8, 16, 32)

MIX_FEATURES = [
    # the published method's
    "rate_level_max",
    "rate_level_min",
    "rate_level_mean",
    "rate_level_std",
    "rank_max",
    "rank_min",
    "rank_mean",
    "rank_std",
    # count-weighted, for any list
    "rate_mean",
    "rate_std",
    "rate_median",
    "rate_cv",
    "busiest_tenth_rate_share",
    "rank_share_le8",
    "rank_share_le16",
    "rank_share_le32",
    "rank_share_gt32",
    "load_weighted_rank",
    "mean_prompt_tokens",
    "mean_output_tokens",
    "offered_req_s_per_adapter",
    "offered_tok_s_per_adapter",
]
# The optimum models see only what does not depend on the list's length: their answer (how many
# adapters of this mix fit) is then capped at the length of the user's list.
WORKLOAD_FEATURES = list(MIX_FEATURES)
CONFIG_FEATURES = MIX_FEATURES + [
    "served",
    "max_loras",
    "max_lora_rank",
    "offered_req_s",
    "offered_tok_s",
    "slots_per_adapter",
    "offered_tok_s_per_slot",
]


@dataclass(frozen=True)
class AdapterMix:
    """What the models know about a list of adapters: rates, ranks and mean request lengths."""

    rates_req_s: np.ndarray
    ranks: np.ndarray
    mean_prompt_tokens: float
    mean_output_tokens: float

    def __post_init__(self) -> None:
        rates = np.asarray(self.rates_req_s, dtype=np.float64)
        ranks = np.asarray(self.ranks, dtype=np.float64)
        if rates.ndim != 1 or rates.shape != ranks.shape or len(rates) == 0:
            raise ValueError("an adapter mix needs one rate and one rank per adapter, and at least one adapter")
        object.__setattr__(self, "rates_req_s", rates)
        object.__setattr__(self, "ranks", ranks)

    def __len__(self) -> int:
        return len(self.rates_req_s)

    @property
    def tokens_per_request(self) -> float:
        return float(self.mean_prompt_tokens + self.mean_output_tokens)

    def head(self, count: int) -> AdapterMix:
        """The first `count` adapters, in the order given."""
        return AdapterMix(self.rates_req_s[:count], self.ranks[:count], self.mean_prompt_tokens, self.mean_output_tokens)

    @classmethod
    def cycling(
        cls,
        count: int,
        rates: Sequence[float],
        ranks: Sequence[int],
        mean_prompt_tokens: float,
        mean_output_tokens: float,
    ) -> AdapterMix:
        """`count` adapters cycling through the rate levels and, independently, the rank levels."""
        positions = np.arange(count)
        return cls(
            np.asarray(rates, dtype=np.float64)[positions % len(rates)],
            np.asarray(ranks, dtype=np.float64)[positions % len(ranks)],
            mean_prompt_tokens,
            mean_output_tokens,
        )


def mix_features(mix: AdapterMix) -> dict[str, float]:
    rates, ranks = mix.rates_req_s, mix.ranks
    levels = np.unique(rates)
    total_rate = float(rates.sum())
    busiest = np.sort(rates)[::-1][: max(1, math.ceil(len(rates) / 10))]
    mean_rate = float(rates.mean())
    features = {
        "rate_level_max": float(levels.max()),
        "rate_level_min": float(levels.min()),
        "rate_level_mean": float(levels.mean()),
        "rate_level_std": float(levels.std()),
        "rank_max": float(ranks.max()),
        "rank_min": float(ranks.min()),
        "rank_mean": float(ranks.mean()),
        "rank_std": float(ranks.std()),
        "rate_mean": mean_rate,
        "rate_std": float(rates.std()),
        "rate_median": float(np.median(rates)),
        "rate_cv": float(rates.std() / mean_rate) if mean_rate > 0 else 0.0,
        # 0.1 when every adapter is equally busy, near 1 when a few carry all the load
        "busiest_tenth_rate_share": float(busiest.sum() / total_rate) if total_rate > 0 else 0.0,
        "load_weighted_rank": float((rates * ranks).sum() / total_rate) if total_rate > 0 else float(ranks.mean()),
        "mean_prompt_tokens": float(mix.mean_prompt_tokens),
        "mean_output_tokens": float(mix.mean_output_tokens),
        "offered_req_s_per_adapter": mean_rate,
        "offered_tok_s_per_adapter": mean_rate * mix.tokens_per_request,
    }
    low = 0
    for bound in RANK_SHARE_BOUNDS:
        features[f"rank_share_le{bound}"] = float(((ranks > low) & (ranks <= bound)).mean())
        low = bound
    features["rank_share_gt32"] = float((ranks > RANK_SHARE_BOUNDS[-1]).mean())
    return features


def workload_features(pool: AdapterMix) -> dict[str, float]:
    """Features of a candidate list of adapters, for the optimum models."""
    features = mix_features(pool)
    return {name: features[name] for name in WORKLOAD_FEATURES}


def config_features(served_mix: AdapterMix, max_loras: int, max_lora_rank: int | None = None) -> dict[str, float]:
    """Features of one configuration: the adapters served (all of `served_mix`) and the server flags."""
    features = mix_features(served_mix)
    served = len(served_mix)
    offered_req_s = float(served_mix.rates_req_s.sum())
    offered_tok_s = offered_req_s * served_mix.tokens_per_request
    features.update(
        served=float(served),
        max_loras=float(max_loras),
        max_lora_rank=float(max_lora_rank if max_lora_rank is not None else served_mix.ranks.max()),
        offered_req_s=offered_req_s,
        offered_tok_s=offered_tok_s,
        slots_per_adapter=max_loras / served,
        offered_tok_s_per_slot=offered_tok_s / max_loras,
    )
    return {name: features[name] for name in CONFIG_FEATURES}


def as_matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> np.ndarray:
    return np.array([[row[name] for name in names] for row in rows], dtype=np.float64).reshape(len(rows), len(names))
