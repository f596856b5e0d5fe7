"""Check the placement lower bound the other way round: a GPU the cost model's acceptance rule
accepts must fit every condition of the bound, so the bound of its share alone (the relaxation
`loratwin.plan.bound.cost_model`, before rounding up) is at most 1.

Two families of shares that sit at the check's limit:
- every GPU of greedy placements (the greedy fills each GPU up to the limit) of random workloads:
  Zipf popularity or rate triples, one rank or several, three limits on the wait;
- the largest share of identical adapters the check accepts, over ranks, rates and wait limits.

    python scripts/check_lower_bound.py [--seeds 2 3 4] [--workloads 16] [--hot 3]

Prints every share whose bound exceeds 1 (there should be none) and the largest bound seen; about
two minutes per seed on two cores. Placements may split busy adapters into replicas (`--hot`
Zipf workloads per seed and profile, after the random ones, whose busiest adapters need them):
each GPU's share then holds the replica at its share of the rate, and the bound of the whole
workload (which allows splits) must stay at most the GPUs placed.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from loratwin import AdapterSpec, load_profile
from loratwin.errors import InputError
from loratwin.plan.bound.cost_model import cost_model_lower_bound
from loratwin.plan.judge import AcceptanceRule, CostModelCheck, adapter_server_rank
from loratwin.plan.placement import place
from loratwin.workload import reference_layout, zipf_layout

PROFILES = ("llama-3.1-8b-instruct", "qwen-2.5-7b-instruct", "llama-3.1-8b-instruct-reference")
WAIT_LIMITS = (None, 60.0, 10.0)
RATE_LEVELS = (1.6, 0.8, 0.4, 0.2, 0.1, 0.05, 0.025, 0.0125)
RANK_MIXES = ((8,), (16,), (32,), (8, 16, 32), (8, 16))
SAME_RATES = (4.0, 2.0, 1.0, 0.8, 0.5, 0.3, 0.1, 0.05, 0.02, 0.01, 0.003)


def random_workload(rng: np.random.Generator, k: int):
    n = int(rng.integers(20, 800))
    if k % 2:
        return zipf_layout(n, float(rng.uniform(5, 120)), float(rng.uniform(0.3, 1.3)), (8, 16, 32),
                           seed=int(rng.integers(1_000_000)))
    levels = sorted(rng.choice(RATE_LEVELS, 3, replace=False), reverse=True)
    ranks = RANK_MIXES[int(rng.integers(len(RANK_MIXES)))]
    return reference_layout(n, tuple(float(x) for x in levels), ranks, seed=int(rng.integers(1_000_000)))


def hot_workload(rng: np.random.Generator):
    """Zipf popularity with the busiest adapters too busy for one GPU: split into replicas."""
    n = int(rng.integers(20, 400))
    return zipf_layout(n, float(rng.uniform(150, 500)), float(rng.uniform(0.8, 1.3)), (8, 16, 32),
                       seed=int(rng.integers(1_000_000)))


def fractional_bound(check: CostModelCheck, share: list[AdapterSpec], profile) -> float:
    """The cost model's lower bound on the GPUs of `share`, before rounding up."""
    need = np.array([adapter_server_rank(profile, a) for a in share], np.float64)
    rates = np.array([a.rate_req_s for a in share], np.float64)
    return cost_model_lower_bound(check, rates, need, profile)


def largest_accepted(check: CostModelCheck, profile, rank: int, rate: float) -> list[AdapterSpec] | None:
    def share(n: int) -> list[AdapterSpec]:
        return [AdapterSpec(id=f"a{i}", rank=rank, rate_req_s=rate) for i in range(n)]

    if not check.evaluate(share(1), profile).ok:
        return None
    lo, hi = 1, 2
    while hi < 5000 and check.evaluate(share(hi), profile).ok:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if check.evaluate(share(mid), profile).ok else (lo, mid)
    return share(lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--workloads", type=int, default=16, help="random workloads per seed and profile")
    parser.add_argument("--hot", type=int, default=3, help="workloads with adapters too busy for one GPU, per seed and profile, after the others")
    args = parser.parse_args()
    started = time.perf_counter()
    largest, shares, placements, over, split = 0.0, 0, 0, 0, 0

    def judge(check, share, profile, label):
        nonlocal largest, shares, over
        bound = fractional_bound(check, share, profile)
        shares += 1
        largest = max(largest, bound)
        if bound > 1 + 1e-9:
            over += 1
            print(f"OVER 1: {label}: {len(share)} adapters, bound {bound:.4f}")

    for seed in args.seeds:
        for name in PROFILES:
            profile = load_profile(name)
            rng = np.random.default_rng(seed)
            # the random workloads first (as before the hot ones were added), then the hot ones
            drawn = [random_workload(rng, k) for k in range(args.workloads)] + [hot_workload(rng) for _ in range(args.hot)]
            for k, workload in enumerate(drawn):
                check = CostModelCheck(rule=AcceptanceRule(max_wait_s=WAIT_LIMITS[k % len(WAIT_LIMITS)]))
                try:
                    placement = place(workload, profile, check=check, search_moves=0)
                except InputError:  # an adapter no GPU serves even without traffic
                    continue
                placements += 1
                if placement.replicated:
                    split += 1
                if placement.lower_bound > placement.gpu_count:
                    over += 1
                    print(f"OVER: {name} seed {seed} workload {k}: bound {placement.lower_bound} GPUs, placed on "
                          f"{placement.gpu_count}")
                for gpu in placement.gpus:  # a replica carries its share of its adapter's rate
                    judge(check, list(gpu.adapters), profile, f"{name} seed {seed} workload {k} GPU {gpu.index}")
        print(f"[{time.perf_counter() - started:6.1f} s] seed {seed}: {placements} placements", file=sys.stderr)
    for name in (PROFILES[0], PROFILES[2]):
        profile = load_profile(name)
        for max_wait in WAIT_LIMITS:
            check = CostModelCheck(rule=AcceptanceRule(max_wait_s=max_wait))
            for rank in (8, 16, 32):
                for rate in SAME_RATES:
                    share = largest_accepted(check, profile, rank, rate)
                    if share is not None:
                        judge(check, share, profile, f"{name} wait {max_wait} rank {rank} rate {rate}")
    print(f"{placements} greedy placements ({split} with adapters split into replicas; the bound of the whole "
          f"workload, which allows splits, at most the GPUs of each) and the identical-adapter shares: {shares} "
          f"accepted GPU shares, "
          f"{over} with a bound over 1; largest bound {largest:.4f} ({time.perf_counter() - started:.0f} s)")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
