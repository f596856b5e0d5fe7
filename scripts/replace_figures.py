"""Re-placement figures: a Zipf workload placed, then 50 adapters drawn at random (per seed) triple
their rate; the adapters `place --from` moves against what a fresh placement of the same adapters
moves (its GPUs matched to the old ones), the loads they cost, and the cluster twin on the
re-placement (every GPU behind the weighted-random router, one arrival stream per adapter split by
the routing weights): starved GPUs by the published rule, GPUs the rule refuses on its numbers.

    python scripts/replace_figures.py [--case hot|today] [--seeds 3] [--duration 3600] [--workers 2]

--case hot: `layout: {kind: zipf, served: 500, total_rate_req_s: 600, exponent: 1.0, ranks: [8, 16, 32]}`
(its busiest adapters need replicas); --case today: 200 adapters at 50 req/s, which `place` serves
without replicas (the busiest tripled, 25.5 req/s, still fits one GPU). Medians over the seeds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from loratwin import load_profile
from loratwin.errors import InputError
from loratwin.plan.placement import place, verify_placement
from loratwin.plan.placement.replace import replace
from loratwin.workload import WorkloadSpec, zipf_layout

CASES = {"hot": (500, 600.0), "today": (200, 50.0)}
RANKS = (8, 16, 32)
HOT_ADAPTERS = 50
FACTOR = 3.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), default="hot")
    parser.add_argument("--profile", default="llama-3.1-8b-instruct")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3600.0, help="simulated seconds per GPU")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    served, total = CASES[args.case]
    workload = zipf_layout(served, total, 1.0, RANKS, seed=0)
    try:
        old = place(workload, profile)
    except InputError as err:
        print(f"case {args.case} ({served} adapters, {total:g} req/s) does not place: {err}", file=sys.stderr)
        return 1
    print(f"case {args.case}: {served} Zipf adapters at {total:g} req/s on {old.gpu_count} GPUs; {HOT_ADAPTERS} "
          f"adapters drawn per seed triple their rate; profile {profile.name}\n")
    print("| seed | GPUs | moved | share of adapters | fresh moves | fresh GPUs | move loads s | restarts | "
          "starved GPUs (cluster twin) | refused GPUs (cluster twin) | re-place s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for seed in range(args.seeds):
        rng = random.Random(seed)
        hot = {a.id for a in rng.sample(list(workload.adapters), HOT_ADAPTERS)}
        adapters = [a.model_copy(update={"rate_req_s": a.rate_req_s * FACTOR}) if a.id in hot else a
                    for a in workload.adapters]
        started = time.perf_counter()
        result = replace(old, adapters, profile)
        elapsed = time.perf_counter() - started
        twin = verify_placement(result.placement, profile, duration_s=args.duration, seed=seed, workers=args.workers,
                                router="weighted-random", workload=WorkloadSpec(adapters=tuple(adapters)))
        row = (len(result.moves), result.fresh_moves, len(twin.starved_gpus))
        rows.append(row)
        print(f"| {seed} | {result.placement.gpu_count} | {row[0]} | {row[0] / served:.1%} | {row[1]} | "
              f"{result.fresh_gpus} | {result.moved_load_ms / 1000:.2f} | {len(result.restarts)} | "
              f"{len(twin.starved_gpus)} | {len(twin.refused_gpus)} | {elapsed:.1f} |", flush=True)
    moved = statistics.median(r[0] for r in rows)
    fresh = statistics.median(r[1] for r in rows)
    print(f"\nmedian over {len(rows)} seeds: {moved:g} adapters moved ({moved / served:.1%} of {served}; target "
          f"<= 20%), a fresh placement {fresh:g} ({moved / fresh:.2f} times as many moved); starved GPUs "
          f"{statistics.median(r[2] for r in rows):g} (target 0)" if fresh else
          f"\nmedian over {len(rows)} seeds: {moved:g} adapters moved, a fresh placement none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
