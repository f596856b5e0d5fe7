"""Placement of a workload with adapters too busy for one GPU: 500 adapters, Zipf(1.0) popularity,
600 req/s in all (the busiest at 88 req/s), ranks 8/16/32, on the default profile and check.

Prints the GPUs placed against the lower bound (which allows splits; the bound that does not is
printed beside it), the replicas made (adapters split, the largest split), and the time taken
(median of --runs runs; every run gives the same placement).

    python scripts/place_hot_zipf.py [--profile llama-3.1-8b-instruct] [--runs 3] [--out hot.yaml]
        [--search-moves 50] [--verify 3600]

`--out` writes the placement (with its routing table) as `loratwin place --out` does (the input of
`loratwin simulate-cluster`). `--cluster SECONDS` (default 3600; 0: skip) then runs the cluster
twin on the placement, every GPU behind one router fed by the routing table, once per router
policy (weighted-random, least-outstanding, affinity), side by side: starved GPUs (published rule),
share of the offered load served, GPUs with a starved adapter, and the time it took.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from loratwin import load_profile
from loratwin.plan.bound import lower_bound_gpus
from loratwin.plan.judge import make_check
from loratwin.plan.placement import DEFAULT_SEARCH_MOVES, place, verify_placement
from loratwin.workload import zipf_layout

SERVED, TOTAL_REQ_S, EXPONENT, RANKS = 500, 600.0, 1.0, (8, 16, 32)


def cluster_check(placement, workload, profile, duration_s: float, seed: int) -> list[dict]:
    """The cluster twin on the placement, once per router policy: the figures of each."""
    from loratwin.plan.placement.read import placement_cluster
    from loratwin.twin.cluster import ROUTERS, simulate_cluster

    spec = placement_cluster(placement.to_dict(), workload, "the placement")
    rows = []
    for router in ROUTERS:
        started = time.perf_counter()
        result = simulate_cluster(spec, profile, router=router, duration_s=duration_s, seed=seed, workers=2)
        elapsed = time.perf_counter() - started
        with_starved = [row["gpu"] for row in result.gpu_rows() if row.get("starved_adapters")]
        rows.append({"router": router, "starved_gpus": result.starved_gpus, "served_share": result.served_share,
                     "gpus_with_starved_adapters": with_starved, "elapsed_s": elapsed})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="llama-3.1-8b-instruct")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--search-moves", type=int, default=DEFAULT_SEARCH_MOVES)
    parser.add_argument("--seed", type=int, default=0, help="the seed of the rank shuffle")
    parser.add_argument("--out", type=Path, help="also write the placement here (.yaml or .json)")
    parser.add_argument("--cluster", type=float, metavar="SECONDS", default=3600.0,
                        help="run the cluster twin on the placement for this long, per router (0: skip)")
    parser.add_argument("--verify", type=float, metavar="SECONDS", default=0.0,
                        help="also simulate every GPU alone with the twin for this long, at its share of each "
                             "replicated adapter's rate (place --verify)")
    args = parser.parse_args()

    profile = load_profile(args.profile)
    workload = zipf_layout(SERVED, TOTAL_REQ_S, EXPONENT, RANKS, seed=args.seed)
    check = make_check("auto", profile, workload.lengths, arrival=workload.arrival)
    times, placement = [], None
    for _ in range(args.runs):
        started = time.perf_counter()
        placement = place(workload, profile, check=check, search_moves=args.search_moves)
        times.append(time.perf_counter() - started)
    whole_bound = lower_bound_gpus(list(workload.adapters), profile, check, splits=False)
    busiest = max(workload.adapters, key=lambda a: a.rate_req_s)
    split = placement.replicated
    largest = max(split.items(), key=lambda kv: len(kv[1])) if split else None
    print(f"workload: {SERVED} adapters, Zipf({EXPONENT:g}), {TOTAL_REQ_S:g} req/s, ranks "
          f"{'/'.join(map(str, RANKS))} (seed {args.seed}); busiest {busiest.id} at {busiest.rate_req_s:.1f} req/s "
          f"(rank {busiest.rank}); profile {profile.name}, {placement.check} check")
    print(f"GPUs placed: {placement.gpu_count}; lower bound {placement.lower_bound} (allowing splits; "
          f"{whole_bound} if no adapter were split)")
    if largest is not None:
        print(f"replicas: {len(split)} adapters split into {sum(len(g) for g in split.values())} replicas; largest "
              f"split {largest[0]} over {len(largest[1])} GPUs")
        for adapter, gpus in split.items():
            rate = next(a.rate_req_s for a in workload.adapters if a.id == adapter)
            print(f"  {adapter} ({rate:.1f} req/s): " + ", ".join(f"GPU {g} {w:.3f}" for g, w in gpus.items()))
    else:
        print("replicas: none")
    print(f"GPUs refused by the rule: {len(placement.refused_gpus)}; adapters per GPU "
          f"{min(len(g.adapters) for g in placement.gpus)}-{max(len(g.adapters) for g in placement.gpus)}")
    print(f"time: {np.median(times):.2f} s median of {len(times)} runs ({', '.join(f'{t:.2f}' for t in times)})")
    for note in placement.notes:
        print(f"note: {note}")
    if args.verify > 0:
        checked = verify_placement(placement, profile, duration_s=args.verify, rule=check.rule)
        ratios = [g.throughput_over_offered for g in checked.gpus]
        print(f"twin, each GPU alone ({args.verify:g} s, seed 0): refused {checked.refused_gpus or 'none'}, starved "
              f"{checked.starved_gpus or 'none'}, GPUs with starved adapters {checked.gpus_with_starved_adapters or 'none'}; "
              f"throughput / offered {min(ratios):.3f}-{max(ratios):.3f} (median {np.median(ratios):.3f}); replica GPUs: "
              + ", ".join(f"{g.index} {g.throughput_over_offered:.3f}" for g in checked.gpus
                          if any(g.index in gpus for gpus in split.values())))
    if args.out is not None:
        doc = placement.to_dict()
        text = json.dumps(doc, indent=2) if args.out.suffix == ".json" else _yaml(doc)
        args.out.write_text(text + "\n")
        print(f"wrote {args.out}")
    if args.cluster > 0:
        print(f"cluster twin ({args.cluster:g} s, seed {args.seed}), every GPU behind one router:")
        print("| router | starved GPUs | share of offered load served | GPUs with a starved adapter | time |")
        print("|---|---|---|---|---|")
        for row in cluster_check(placement, workload, profile, args.cluster, args.seed):
            print(f"| {row['router']} | {len(row['starved_gpus'])} {row['starved_gpus'] or ''} | "
                  f"{100 * row['served_share']:.2f}% | {len(row['gpus_with_starved_adapters'])} | "
                  f"{row['elapsed_s']:.1f} s |")
    return 0


def _yaml(doc: dict) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, width=1_000_000)


if __name__ == "__main__":
    raise SystemExit(main())
