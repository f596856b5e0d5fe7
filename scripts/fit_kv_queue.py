"""Fit the cost model's KV queue: how long requests wait for KV admission near capacity.

    python scripts/fit_kv_queue.py [--shares 40] [--profile llama-3.1-8b-instruct] [--seed 0]

A batch near its KV capacity keeps admitting requests only as others finish; at a KV use u (the
cost model's running requests over what the cache holds) the twin's mean time to first token T,
against the run time R of a request, follows T / R ~ a exp(b (u - 1)) from about u = 0.88 up to
1 over an hour's window (from about 0.95 the queue grows for as long as the load lasts, and the
acceptance rule refuses the GPU there: `stable_kv_use`, `check_kv_stability.py`).
Each share gives every adapter a place (max_loras = adapters, so no wait for a place); its load
is set so that the cost model's KV use falls at a random point of [0.8, 1). Fits (a, b) by least
squares in log space on one set of shares, then prints twin / predicted on a second set (each
share one hour in the twin), with the profile's current constants and with the fitted ones.
The constants are the profile's: a and b go in its `placement:` section as `kv_queue_scale` and
`kv_queue_steepness` (`loratwin.profiles.model.PlacementModel`), which the script prints ready to
paste. About four minutes on two cores.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from loratwin import load_profile
from loratwin.plan.judge import CostModelCheck
from loratwin.plan.judge.cost_model import kv_queue_share
from loratwin.twin import ServerConfig
from loratwin.twin.batch import SimulationTask, simulate_many
from loratwin.workload import AdapterSpec, WorkloadSpec

FIT_FROM = 0.93  # below this KV use the queue is a second or less: noise against the prefill


def share_at(rng, profile, check, index):
    n = int(rng.choice([4, 8, 16, 24, 40, 64]))
    ranks = [int(rng.choice([8, 16, 32]))] * n if rng.random() < 0.6 else [int(r) for r in rng.choice([8, 16, 32], n)]
    weights = 1.0 / np.arange(1, n + 1) ** rng.choice([0.0, 0.8, 1.2])
    target = float(rng.uniform(0.8, 1.0))
    lo, hi = 0.5, 80.0  # total req/s, bisected until the check's KV use is the target
    for _ in range(40):
        mid = (lo + hi) / 2
        option = _option(check, weights / weights.sum() * mid, ranks, n, profile)
        lo, hi = (mid, hi) if option.prediction.kv_use < target else (lo, mid)
    rates = weights / weights.sum() * lo
    option = _option(check, rates, ranks, n, profile)
    adapters = tuple(AdapterSpec(id=f"k{index}a{i}", rank=r, rate_req_s=float(x)) for i, (r, x) in enumerate(zip(ranks, rates)))
    task = SimulationTask(WorkloadSpec(adapters=adapters), ServerConfig(max_loras=n, max_cpu_loras=n, max_lora_rank=max(ranks)),
                          profile, duration_s=3600.0, seed=index)
    return option, task


def _option(check, rates, ranks, n, profile):
    verdict = check.evaluate_arrays(np.asarray(rates, np.float64), ranks, profile)
    return next(o for o in verdict.options if o.max_loras == n)


def measure(rng, profile, check, count, first_index, workers):
    pairs = [share_at(rng, profile, check, first_index + i) for i in range(count)]
    results = simulate_many([task for _, task in pairs], workers=workers)
    rows = []
    for (option, _), result in zip(pairs, results):
        if result.mean_ttft_s is None:
            continue
        kv_use = option.prediction.kv_use
        run_s = option.queue_s / kv_queue_share(min(kv_use, 1.0), profile)  # the cost model's run time
        rows.append((kv_use, run_s, result.mean_ttft_s, option.queue_s))
    return np.array(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=int, default=40, help="shares to fit on, and as many to check on")
    parser.add_argument("--profile", default="llama-3.1-8b-instruct")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    profile = load_profile(args.profile)
    check = CostModelCheck()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    fit = measure(rng, profile, check, args.shares, 0, args.workers)
    use, run, ttft = fit[:, 0], fit[:, 1], fit[:, 2]
    keep = (use >= FIT_FROM) & (use < 1)
    if keep.sum() < 2:
        print(f"only {keep.sum()} of {len(fit)} shares at KV use {FIT_FROM}-1: too few to fit (use more --shares)")
        return 1
    slope, intercept = np.polyfit(use[keep] - 1, np.log(ttft[keep] / run[keep]), 1)
    scale = float(np.exp(intercept))
    current = profile.placement
    print(f"fit on {keep.sum()} of {len(fit)} shares (KV use {FIT_FROM}-1): T / R = {scale:.3f} exp({slope:.1f} (u - 1)); "
          f"profile {profile.name} now: {current.kv_queue_scale:g} exp({current.kv_queue_steepness:g} (u - 1))")
    print(f"the fitted constants go in the profile's `placement:` section:\n"
          f"placement:\n  kv_queue_scale: {scale:.3g}\n  kv_queue_steepness: {slope:.1f}")
    check_rows = measure(rng, profile, check, args.shares, args.shares, args.workers)
    use, run, ttft, predicted = check_rows[:, 0], check_rows[:, 1], check_rows[:, 2], check_rows[:, 3]
    fitted = run * scale * np.exp(slope * (np.minimum(use, 1.0) - 1.0))
    for lo, hi in ((0.8, 0.88), (0.88, FIT_FROM), (FIT_FROM, 0.97), (0.97, 1.0)):
        band = (use >= lo) & (use < hi)
        if band.any():
            ratio, ratio_fitted = ttft[band] / predicted[band], ttft[band] / fitted[band]
            print(f"check set, KV use {lo}-{hi}: {band.sum()} shares, twin mean TTFT {np.median(ttft[band]):.1f} s (median), "
                  f"twin / predicted queue with the profile's constants median {np.median(ratio):.2f}, quartiles "
                  f"{np.quantile(ratio, 0.25):.2f}-{np.quantile(ratio, 0.75):.2f}; with the fitted ones median "
                  f"{np.median(ratio_fitted):.2f}, quartiles {np.quantile(ratio_fitted, 0.25):.2f}-"
                  f"{np.quantile(ratio_fitted, 0.75):.2f}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
