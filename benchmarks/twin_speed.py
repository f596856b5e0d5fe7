"""Speed of the twin on three fixed scenarios (llama profile, 1 h, seed 0, client cap 25,500).

Usage: python benchmarks/twin_speed.py [--repeats 3] [--json]

Each scenario runs in its own process: one warm-up (loads the compiled engine), then `repeats`
timed runs of `loratwin.simulate` (workload generation included); the median is reported with
the process's peak resident memory. The published twin's times on a 2-core machine like CI's
are printed beside ours for the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

SCENARIOS = {
    # name: (served adapters, rate levels req/s, ranks, max_loras, published twin seconds)
    "light": (256, [0.1, 0.05, 0.025], [8, 16], 64, 7.5),
    "mid": (192, [0.4, 0.05, 0.025], [8, 16, 32], 32, 84.0),
    "heavy": (128, [1.6, 0.8, 0.4], [8, 16], 32, 103.0),
}


def run_one(name: str, repeats: int) -> dict:
    from loratwin import ServerConfig, reference_layout, simulate

    served, rates, ranks, max_loras, _ = SCENARIOS[name]
    server = ServerConfig(max_loras=max_loras, client_max_waiting=25_500)

    def once() -> tuple[float, dict]:
        t0 = time.perf_counter()
        workload = reference_layout(served, rates, ranks, seed=0)
        result = simulate(workload, server, "llama-3.1-8b-instruct", duration_s=3600, seed=0)
        return time.perf_counter() - t0, result.summary

    once()  # warm-up: loads (or compiles) the engine
    times = []
    for _ in range(repeats):
        dt, summary = once()
        times.append(dt)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "scenario": name,
        "median_s": statistics.median(times),
        "times_s": times,
        "peak_rss_mb": peak_mb,
        "steps": summary["steps"],
        "arrived": summary["arrived"],
        "total_tok_s": summary["total_tok_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--scenario", help=argparse.SUPPRESS)  # internal: run one in this process
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(run_one(args.scenario, args.repeats)))
        return

    rows = []
    for name in SCENARIOS:
        proc = subprocess.run(
            [sys.executable, __file__, "--scenario", name, "--repeats", str(args.repeats)],
            capture_output=True, text=True, check=True,
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["published_s"] = SCENARIOS[name][4]
        row["speedup"] = row["published_s"] / row["median_s"]
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'scenario':8} {'median s':>9} {'published s':>12} {'speedup':>8} {'peak MB':>8} {'steps':>8} {'requests':>9}")
    for r in rows:
        print(f"{r['scenario']:8} {r['median_s']:9.3f} {r['published_s']:12.1f} {r['speedup']:7.0f}x "
              f"{r['peak_rss_mb']:8.0f} {r['steps']:8,} {r['arrived']:9,}")
    geo = statistics.geometric_mean([r["speedup"] for r in rows])
    print(f"geometric mean speedup: {geo:.0f}x")


if __name__ == "__main__":
    main()
