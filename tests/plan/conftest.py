"""Helpers shared by the placement tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from loratwin import load_profile
from loratwin.workload import zipf_layout

PROFILE = "llama-3.1-8b-instruct"


@pytest.fixture(scope="module")
def profile():
    """The built-in Llama profile the placement tests judge with."""
    return load_profile(PROFILE)


@pytest.fixture(scope="module")
def zipf60():
    # about 13k tok/s offered with a 6 req/s adapter on top: two GPUs at least
    return zipf_layout(60, 30.0, 1.0, ranks=(8, 16, 32), seed=0)


@dataclass
class Strain:
    strain: float


def capacity_judge(rates, capacity=1.0, per_adapter=0.0):
    """A GPU is accepted while its load (rates plus a cost per adapter) is within its capacity."""
    calls = []

    def judge(members):
        calls.append(tuple(members))
        return Strain(sum(rates[i] for i in members) / capacity + per_adapter * len(members))

    judge.calls = calls
    return judge


def is_partition(bins, n):
    return sorted(i for b in bins for i in b) == list(range(n))


def load_at_kv_use(kv_use_at, target: float, lo: float = 24.0, hi: float = 40.0) -> float:
    """The total rate (req/s) in [lo, hi] at which `kv_use_at(rate)` is just under `target`
    (KV use grows with the load)."""
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kv_use_at(mid) < target else (lo, mid)
    return lo


def resident_share(total_req_s: float, n: int = 24, rank: int = 8):
    """`n` alike adapters sharing `total_req_s`: with max_loras n every one has a place, so only
    the KV cache can make requests wait."""
    from loratwin import AdapterSpec

    return [AdapterSpec(id=f"r{i}", rank=rank, rate_req_s=total_req_s / n) for i in range(n)]
