"""Placement figures: GPUs used by each algorithm against the lower bound, starved GPUs under twin
verification, placement time; for 100, 500 and 2,000 adapters (Zipf popularity and the paper's
rate-triple layouts), plus greedy against the exact search on small instances. "greedy" is the
greedy alone (`search_moves=0`); "greedy+search" is `place`'s default (the greedy, then moves
between GPUs to free GPUs). Times are the median of three runs.

    python scripts/place_figures.py [--profile llama-3.1-8b-instruct] [--verify-duration 3600]
        [--check auto] [--max-wait 60] [--out docs/placement/figures.json]

Prints Markdown tables (docs/placement/README.md holds a run); about three minutes on two cores
(the twin runs dominate).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from loratwin import load_profile
from loratwin.plan.bound import FLUID_BOUNDS
from loratwin.plan.judge import AcceptanceRule, TwinCheck, make_check
from loratwin.plan.placement import DEFAULT_SEARCH_MOVES, place, verify_placement
from loratwin.workload import AdapterSpec, WorkloadSpec, reference_layout, zipf_layout

RANKS = (8, 16, 32)
# Zipf (exponent 1) totals in req/s, chosen so that several GPUs are needed while the busiest
# adapter (total / H_n) still fits on one GPU.
ZIPF_TOTALS = {100: 60.0, 500: 100.0, 2000: 150.0}
# Rate triples from the paper grid's levels, chosen so that several GPUs are needed.
RATE_TRIPLES = {100: (1.6, 0.8, 0.4), 500: (0.4, 0.1, 0.05), 2000: (0.1, 0.05, 0.025)}
BASELINES = ("round-robin", "least-loaded", "rank-grouped")
GREEDIES = ("greedy", "greedy+search")
TIMING_RUNS = 3


def workloads() -> list[tuple[str, WorkloadSpec]]:
    out = []
    for n, total in ZIPF_TOTALS.items():
        out.append((f"zipf n={n} {total:g} req/s", zipf_layout(n, total, 1.0, RANKS, seed=0)))
    for n, rates in RATE_TRIPLES.items():
        out.append((f"triple n={n} {'/'.join(f'{r:g}' for r in rates)}", reference_layout(n, rates, RANKS, seed=0)))
    return out


def timed_place(workload, profile, check, runs=TIMING_RUNS, **kwargs):
    """The placement and the median of `runs` timings (every run gives the same placement)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        placement = place(workload, profile, check=check, **kwargs)
        times.append(time.perf_counter() - started)
    return placement, float(np.median(times))


def _fractional_bound(check, workload, profile) -> float | None:
    """The estimator's own relaxation before rounding up, where it has one (the cost model)."""
    relaxation = FLUID_BOUNDS.get(type(check))
    return None if relaxation is None else float(relaxation(check, list(workload.adapters), profile))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="llama-3.1-8b-instruct")
    parser.add_argument("--verify-duration", type=float, default=3600.0)
    parser.add_argument("--short-duration", type=float, default=900.0, help="also verify with this shorter window")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--check", default="auto", help="the estimator the algorithms use (auto, cost-model, learned, twin)")
    parser.add_argument("--max-wait", type=float, default=60.0,
                        help="the acceptance rule's limit on the mean waits (s): for a place in the batch, for KV admission")
    parser.add_argument("--out", default=None, help="also write every number as JSON here")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    # one rule for every algorithm, the twin check and the verification: judged over the verified window
    rule = AcceptanceRule(window_s=args.verify_duration, max_wait_s=args.max_wait)
    started = time.perf_counter()
    rows, exact_rows = [], []

    def verify(placement):
        report = verify_placement(placement, profile, duration_s=args.verify_duration, rule=rule, workers=args.workers)
        short = verify_placement(placement, profile, duration_s=args.short_duration, rule=rule, workers=args.workers)
        waits = [g.idle_start_ttft_s for g in report.gpus if g.idle_start_ttft_s is not None]
        ttfts = [g.mean_ttft_s for g in report.gpus if g.mean_ttft_s is not None]
        return {"starved_gpus": len(report.starved_gpus), "gpus_with_starved_adapters": len(report.gpus_with_starved_adapters),
                "twin_tok_s": report.total_tok_s, "offered_tok_s": report.offered_tok_s,
                # the twin's counterpart of the check's wait for a place in the batch, worst GPU
                "worst_idle_start_ttft_s": max(waits, default=None),
                # every request's: a GPU whose batch outgrows its KV cache queues them all
                "worst_mean_ttft_s": max(ttfts, default=None),
                "starved_gpus_short": len(short.starved_gpus),
                "gpus_with_starved_adapters_short": len(short.gpus_with_starved_adapters)}

    warm = make_check(args.check, profile, rule=rule)
    place(zipf_layout(20, 5.0, 1.0, RANKS, seed=0), profile, check=warm)  # length tables, imports

    for name, workload in workloads():
        check = make_check(args.check, profile, workload.lengths, rule=rule, arrival=workload.arrival)
        greedy, greedy_s = timed_place(workload, profile, check, search_moves=0)
        searched, searched_s = timed_place(workload, profile, check, search_moves=DEFAULT_SEARCH_MOVES)
        row = {"workload": name, "adapters": len(workload.adapters), "offered_tok_s": greedy.offered_tok_s,
               "check": greedy.check, "lower_bound": greedy.lower_bound,
               "lower_bound_fractional": _fractional_bound(check, workload, profile),
               "greedy": {"gpus": greedy.gpu_count, "time_s": greedy_s, **verify(greedy)},
               "greedy+search": {"gpus": searched.gpu_count, "time_s": searched_s, **verify(searched)}}
        for algorithm in BASELINES:
            placement, seconds = timed_place(workload, profile, check, algorithm=algorithm)
            row[algorithm] = {"gpus": placement.gpu_count, "time_s": seconds, **verify(placement)}
        # round-robin held to the greedy's GPU count and to the lower bound, and a rate-balanced
        # split held to 25% fewer GPUs than round-robin needs: what they starve, how long they wait
        fewer = math.floor(0.75 * row["round-robin"]["gpus"])
        for label, algorithm, count in (("round-robin@greedy", "round-robin", greedy.gpu_count),
                                        ("round-robin@bound", "round-robin", greedy.lower_bound),
                                        ("least-loaded@-25%", "least-loaded", fewer)):
            forced = _forced(algorithm, workload, profile, check, count, like=greedy)
            row[label] = {"gpus": count, **verify(forced)}
            if label == "least-loaded@-25%":
                row[label]["at_best_max_loras"] = _at_best_max_loras(forced, profile, args.verify_duration, args.workers)
        rows.append(row)
        print(f"[{time.perf_counter() - started:6.1f} s] {name}: done", file=sys.stderr)

    rng = np.random.default_rng(0)
    for trial in range(6):
        n = 10
        rates = rng.lognormal(np.log(5.0), 0.8, n)
        adapters = tuple(AdapterSpec(id=f"a{i}", rank=int(rng.choice(RANKS)), rate_req_s=float(min(r, 12.0)))
                         for i, r in enumerate(rates))
        workload = WorkloadSpec(adapters=adapters)
        check = make_check(args.check, profile, rule=rule)
        greedy, _ = timed_place(workload, profile, check, runs=1, search_moves=0)
        searched, _ = timed_place(workload, profile, check, runs=1)
        exact, exact_s = timed_place(workload, profile, check, algorithm="exact")
        exact_rows.append({"trial": trial, "adapters": n, "rate_req_s": sum(a.rate_req_s for a in adapters),
                           "lower_bound": greedy.lower_bound, "greedy": greedy.gpu_count,
                           "greedy+search": searched.gpu_count, "exact": exact.gpu_count,
                           "exact_time_s": exact_s, "exact_starved_gpus": verify(exact)["starved_gpus"]})

    # the reference: the same greedy judged by the twin itself, on instances small enough for it
    twin_rows = []
    for name, workload in (("zipf n=40 30 req/s", zipf_layout(40, 30.0, 1.0, RANKS, seed=0)),
                           ("triple n=48 1.6/0.8/0.4", reference_layout(48, (1.6, 0.8, 0.4), RANKS, seed=0))):
        row = {"workload": name}
        for label, check in (("cost-model", make_check(args.check, profile, rule=rule)), ("twin", TwinCheck(rule=rule))):
            # one run: the twin check keeps its simulations, so a second run would take no time
            placement, seconds = timed_place(workload, profile, check, runs=1, search_moves=0)
            row[label] = {"gpus": placement.gpu_count, "time_s": seconds, **verify(placement)}
        twin_rows.append(row)

    _print(rows, exact_rows, twin_rows, args, time.perf_counter() - started)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"profile": profile.name, "verify_duration_s": args.verify_duration,
                       "short_duration_s": args.short_duration, "workloads": rows, "exact": exact_rows,
                       "twin_check": twin_rows}, handle, indent=2)
    return 0


def _forced(algorithm, workload, profile, check, count, like):
    """`algorithm`'s placement on `count` GPUs, built even where the rule refuses it (each GPU
    then runs its least strained max_loras), to simulate; `like`: a placement of the same
    workload whose other fields it shares."""
    from loratwin.errors import InputError

    try:
        return place(workload, profile, gpus=count, algorithm=algorithm, check=check)
    except InputError:
        from dataclasses import replace

        from loratwin.plan.placement import ShareJudge
        from loratwin.plan.placement.algorithms import least_loaded_bins, round_robin_bins
        from loratwin.plan.placement.place import gpu_plan

        items = list(workload.adapters)
        judge = ShareJudge(check, profile, items)
        deal = round_robin_bins if algorithm == "round-robin" else least_loaded_bins
        bins = [b for b in deal(count, items) if b]
        return replace(like, gpus=[gpu_plan(i, b, judge) for i, b in enumerate(bins)], algorithm=algorithm)


def _at_best_max_loras(placement, profile, duration_s, workers):
    """Every GPU of `placement` simulated at every max_loras the cost model considers (21 values
    from 1 to 384, and the GPU's adapter count) that starts, over `duration_s`: the GPU whose best
    max_loras serves the least of its load, and that best (does any max_loras rescue the split,
    whatever the check chose?)."""
    from loratwin.plan.judge import SLOT_CANDIDATES, startable_slots
    from loratwin.twin import ServerConfig
    from loratwin.twin.batch import SimulationTask, simulate_many
    from loratwin.twin.config import REFERENCE_CLIENT_MAX_WAITING

    tasks, owners = [], []
    for g in placement.gpus:
        rank, slots, _ = startable_slots(profile, [a.rank for a in g.adapters], len(g.adapters), SLOT_CANDIDATES)
        share = WorkloadSpec(adapters=g.adapters, lengths=placement.lengths, arrival=placement.arrival)
        for s, _ in slots:
            server = ServerConfig(max_loras=s, max_cpu_loras=len(g.adapters), max_lora_rank=rank,
                                  client_max_waiting=REFERENCE_CLIENT_MAX_WAITING)
            tasks.append(SimulationTask(share, server, profile, duration_s=duration_s, seed=0))
            owners.append((g.index, s))
    best: dict[int, tuple[float, int]] = {}  # per GPU: its best throughput/offered and max_loras
    least_wait: dict[int, float] = {}  # per GPU: the least wait among its max_loras that keep up
    for (gpu, s), result in zip(owners, simulate_many(tasks, workers=workers)):
        served = float(result.summary["throughput_over_offered"])
        if gpu not in best or served > best[gpu][0]:
            best[gpu] = (served, s)
        if not result.starved:
            least_wait[gpu] = min(least_wait.get(gpu, math.inf), result.first_token_wait_s or 0.0)
    gpu, (served, s) = min(best.items(), key=lambda item: item[1][0])
    return {"gpu": gpu, "max_loras": s, "throughput_over_offered": served,
            "starved_gpus": sum(not least_wait.get(g, math.inf) < math.inf for g in best),
            # the GPU that waits longest at its least-waiting max_loras that keeps up (inf: one never keeps up)
            "worst_least_wait_s": max((least_wait.get(g, math.inf) for g in best), default=None)}


def _held(cell) -> str:
    def seconds(key):
        return "-" if cell[key] is None else f"{cell[key]:.0f} s"

    return (f"{cell['gpus']} ({cell['starved_gpus']}/{cell['starved_gpus_short']}; {cell['gpus_with_starved_adapters']}; "
            f"{seconds('worst_mean_ttft_s')}; {seconds('worst_idle_start_ttft_s')})")


def _print(rows, exact_rows, twin_rows, args, elapsed) -> None:
    print(f"check: {rows[0]['check']} (window {args.verify_duration:g} s, max wait {args.max_wait:g} s); twin verification: {args.verify_duration:g} s per GPU (and {args.short_duration:g} s), "
          "seed 0, client cap 25,500; starved = 1 - throughput/offered >= 0.1 on that GPU\n")
    print("| workload | offered tok/s | bound (fractional) | greedy | greedy+search | round-robin | least-loaded | rank-grouped | "
          "greedy time s | greedy+search time s |")
    print("|---|---:|---:|---|---|---|---|---|---:|---:|")
    for r in rows:
        cells = {key: f"{r[key]['gpus']} ({r[key]['starved_gpus']}/{r[key]['starved_gpus_short']} starved)" for key in (*GREEDIES, *BASELINES)}
        fractional = "" if r["lower_bound_fractional"] is None else f" ({r['lower_bound_fractional']:.2f})"
        print(f"| {r['workload']} | {r['offered_tok_s']:,.0f} | {r['lower_bound']}{fractional} | {cells['greedy']} | {cells['greedy+search']} | "
              f"{cells['round-robin']} | {cells['least-loaded']} | {cells['rank-grouped']} | {r['greedy']['time_s']:.2f} | "
              f"{r['greedy+search']['time_s']:.2f} |")
    print("\nheld to fewer GPUs than the check accepts (each GPU at its least strained max_loras): GPUs (starved GPUs 1 h / short; "
          "GPUs with a starved adapter; worst GPU's mean TTFT; worst GPU's mean TTFT of the requests that found their adapter idle)")
    print("| workload | round-robin on greedy's GPUs | round-robin on the bound | least-loaded on 25% fewer than round-robin |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} | " + " | ".join(_held(r[key]) for key in ("round-robin@greedy", "round-robin@bound", "least-loaded@-25%")) + " |")
    print("\nthe least-loaded split on 25% fewer GPUs than round-robin, every GPU simulated at every max_loras of the check's "
          "grid that starts: GPUs that starve at every max_loras; the worst GPU's best throughput/offered (at max_loras); "
          "the longest of the GPUs' least waits (the longer of the mean TTFT and the idle adapters' mean TTFT) at a max_loras "
          "that does not starve")
    print("| workload | GPUs | starve at every max_loras | worst GPU's best | least wait that keeps up, worst GPU |")
    print("|---|---:|---:|---|---:|")
    for r in rows:
        b = r["least-loaded@-25%"]["at_best_max_loras"]
        wait = "none keeps up" if not math.isfinite(b["worst_least_wait_s"]) else f"{b['worst_least_wait_s']:.0f} s"
        print(f"| {r['workload']} | {r['least-loaded@-25%']['gpus']} | {b['starved_gpus']} | "
              f"{b['throughput_over_offered']:.3f} (max_loras {b['max_loras']}) | {wait} |")
    print("\nplacement time (s, median of three), all algorithms:")
    for r in rows:
        times = ", ".join(f"{a} {r[a]['time_s']:.2f}" for a in (*GREEDIES, *BASELINES))
        print(f"- {r['workload']}: {times}")
    print("\nGPUs with an adapter flagged starved by the twin (per-adapter rule), long / short window:")
    for r in rows:
        flags = ", ".join(f"{a} {r[a]['gpus_with_starved_adapters']}/{r[a]['gpus_with_starved_adapters_short']}"
                          for a in (*GREEDIES, *BASELINES))
        print(f"- {r['workload']}: {flags}")
    for key in GREEDIES:
        print(f"\nbars, {key}:")
        for r in rows:
            g, rr, bound = r[key], r["round-robin"], r["lower_bound"]
            allowed = math.ceil(1.1 * bound - 1e-9)
            saving = 1 - g["gpus"] / rr["gpus"]
            print(f"- {r['workload']}: starved GPUs {g['starved_gpus']} (short window {g['starved_gpus_short']}; bar 0) | {g['gpus']} GPUs vs "
                  f"ceil(1.1 x bound {bound}) = {allowed}: {'ok' if g['gpus'] <= allowed else 'MISSED'} | "
                  f"{saving:.0%} fewer GPUs than round-robin ({rr['gpus']}, {rr['starved_gpus']} starved): "
                  f"{'ok' if saving >= 0.25 else 'MISSED'} | time {g['time_s']:.2f} s")
    print("\nexact search on 10 adapters (lognormal rates around 5 req/s, at most 12, ranks 8/16/32):")
    print("| trial | req/s | bound | greedy | greedy+search | exact | exact time s | exact starved (twin) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for e in exact_rows:
        print(f"| {e['trial']} | {e['rate_req_s']:.1f} | {e['lower_bound']} | {e['greedy']} | {e['greedy+search']} | {e['exact']} | "
              f"{e['exact_time_s']:.2f} | {e['exact_starved_gpus']} |")
    print(f"\ngreedy judged by the cost model against greedy judged by the twin ({args.verify_duration:g} s runs, the same wait limit):")
    print("| workload | cost-model GPUs | time s | starved (twin) | twin-check GPUs | time s | starved (twin) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for t in twin_rows:
        c, w = t["cost-model"], t["twin"]
        print(f"| {t['workload']} | {c['gpus']} | {c['time_s']:.2f} | {c['starved_gpus']} | {w['gpus']} | {w['time_s']:.1f} | {w['starved_gpus']} |")
    print(f"\ntotal {elapsed:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
