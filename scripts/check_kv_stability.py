"""Where the queue for KV admission stops settling: the acceptance rule's KV-use limit, the profile's
`placement.stable_kv_use`.

    python scripts/check_kv_stability.py [--shares 120] [--seed 11] [--profile llama-3.1-8b-instruct]

Random shares (as `fit_kv_queue.py` draws them: every adapter resident, the load set so that the
cost model's KV use falls at a random point of [0.8, 1)) simulated in the twin over 2 and over 8 hours.
A queue that settles gives the same mean TTFT over both windows; one that grows for as long as the
load lasts gives a longer one over the longer window. A share "grows" when its 8-hour mean TTFT is
over 1.5 times its 2-hour one plus 2 s. Prints, per band of the cost model's KV use, the shares,
those that grow, and the median mean TTFTs, and how many grow below and at or above the profile's
limit (the value that goes in its `placement:` section as `stable_kv_use`). About four minutes on
two cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
from fit_kv_queue import share_at

from loratwin import load_profile
from loratwin.plan.judge import CostModelCheck
from loratwin.twin.batch import simulate_many

EDGES = (0.8, 0.9, 0.93, 0.97, 1.0)  # with the profile's limit between them
GROWTH_FACTOR = 1.5
GROWTH_SLACK_S = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=int, default=120)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--profile", default="llama-3.1-8b-instruct")
    parser.add_argument("--short", type=float, default=7200.0, help="the shorter window (s)")
    parser.add_argument("--long", type=float, default=28800.0, help="the longer window (s)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    profile = load_profile(args.profile)
    limit = profile.placement.stable_kv_use
    bands = sorted({*EDGES, limit})
    check = CostModelCheck()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    pairs = [share_at(rng, profile, check, i) for i in range(args.shares)]
    tasks = [replace(task, duration_s=window) for _, task in pairs for window in (args.short, args.long)]
    results = simulate_many(tasks, workers=args.workers)
    rows = []
    for i, (option, _) in enumerate(pairs):
        short, long = results[2 * i].mean_ttft_s, results[2 * i + 1].mean_ttft_s
        if short is None or long is None:
            continue
        rows.append((option.prediction.kv_use, short, long, long > GROWTH_FACTOR * short + GROWTH_SLACK_S))
    table = np.array(rows, dtype=np.float64)
    print(f"{len(rows)} shares, mean TTFT over {args.short:g} s and {args.long:g} s; grows: the longer window's "
          f"over {GROWTH_FACTOR:g} x the shorter's + {GROWTH_SLACK_S:g} s; the limit of profile {profile.name} "
          f"(placement.stable_kv_use) {limit:g}\n")
    print("| cost model's KV use | shares | grow | median mean TTFT, short window s | long window s |")
    print("|---|---:|---:|---:|---:|")
    for lo, hi in zip(bands[:-1], bands[1:]):
        inside = table[(table[:, 0] >= lo) & ((table[:, 0] < hi) | (hi == bands[-1]))]
        if not len(inside):
            continue
        print(f"| {lo:.2f}-{hi:.2f} | {len(inside)} | {int(inside[:, 3].sum())} | {np.median(inside[:, 1]):.1f} | "
              f"{np.median(inside[:, 2]):.1f} |")
    below, above = table[table[:, 0] < limit], table[table[:, 0] >= limit]
    print(f"\nbelow the limit {limit:g}: {int(below[:, 3].sum())} of {len(below)} grow; at or above it {int(above[:, 3].sum())} "
          f"of {len(above)} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
