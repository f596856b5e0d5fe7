"""Speed of the twin on three fixed scenarios (llama profile, 1 h, seed 0, client cap 25,500).

Usage: python benchmarks/twin_speed.py [--repeats 3] [--json] [--scaling] [--profile-heavy]

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


def scaling(repeats: int) -> None:
    """Wall time of the heavy scenario against simulated duration and against offered load."""
    from loratwin import ServerConfig, reference_layout, simulate

    served, rates, ranks, max_loras, _ = SCENARIOS["heavy"]
    server = ServerConfig(max_loras=max_loras, client_max_waiting=25_500)

    def timed(duration_s: float, load: float) -> tuple[float, dict]:
        workload = reference_layout(served, [r * load for r in rates], ranks, seed=0)
        simulate(workload, server, "llama-3.1-8b-instruct", duration_s=min(duration_s, 60), seed=0)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = simulate(workload, server, "llama-3.1-8b-instruct", duration_s=duration_s, seed=0)
            times.append(time.perf_counter() - t0)
        return statistics.median(times), result.summary

    print(f"{'case':22} {'median s':>9} {'requests':>9} {'steps':>8} {'us/request':>11} {'us/step':>8}")
    cases = [(f"duration {d / 3600:g} h", d, 1.0) for d in (900, 3600, 14400)]
    cases += [(f"load {x:g}x heavy, 1 h", 3600, x) for x in (0.25, 0.5, 1.0, 2.0, 4.0)]
    for label, duration_s, load in cases:
        wall, s = timed(duration_s, load)
        print(f"{label:22} {wall:9.3f} {s['arrived']:9,} {s['steps']:8,} "
              f"{1e6 * wall / s['arrived']:11.2f} {1e6 * wall / s['steps']:8.1f}")


def profile_heavy() -> None:
    """Where the time of one heavy run goes (cProfile, after a warm-up)."""
    import cProfile
    import pstats

    from loratwin import ServerConfig, reference_layout, simulate

    served, rates, ranks, max_loras, _ = SCENARIOS["heavy"]
    server = ServerConfig(max_loras=max_loras, client_max_waiting=25_500)
    workload = reference_layout(served, rates, ranks, seed=0)
    simulate(workload, server, "llama-3.1-8b-instruct", duration_s=60, seed=0)
    profiler = cProfile.Profile()
    profiler.enable()
    simulate(workload, server, "llama-3.1-8b-instruct", duration_s=3600, seed=0)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--scaling", action="store_true", help="print the scaling table instead")
    parser.add_argument("--profile-heavy", action="store_true", help="profile one heavy run instead")
    parser.add_argument("--scenario", help=argparse.SUPPRESS)  # internal: run one in this process
    args = parser.parse_args()
    if args.scaling:
        scaling(args.repeats)
        return
    if args.profile_heavy:
        profile_heavy()
        return
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
