"""How the cost-model estimator, judged by the acceptance rule, compares with the twin on random GPU shares.

    python scripts/check_cost_model.py [--shares 200] [--profile llama-3.1-8b-instruct] [--seed 0]
        [--window 3600] [--max-wait 60] [--out rows.csv]

Each share is a random set of adapters (3 to 600, Zipf or rate-triple popularity, one rank or
8/16/32 mixed, total load from light to past what a GPU carries) served at one random max_loras.
The twin runs it for 900 s and for 3,600 s; the rule's verdict on the cost model's prediction
(`CostModelCheck(rule=AcceptanceRule(window_s, max_wait_s))`, accepted or refused) is compared
with the twin's starvation (published rule) over both windows. Prints the false accepts (the rule
accepts, the twin starves: what placement must avoid), the false rejects (capacity the rule leaves
unused) and the predicted wait for a place in the batch against the twin's.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time

import numpy as np

from loratwin import load_profile
from loratwin.plan.judge import SLOT_CANDIDATES, AcceptanceRule, CostModelCheck
from loratwin.plan.judge.slots import kv_tokens_or_none, server_rank, slot_candidates
from loratwin.twin import ServerConfig
from loratwin.twin.batch import SimulationTask, simulate_many
from loratwin.twin.config import REFERENCE_CLIENT_MAX_WAITING
from loratwin.workload import AdapterSpec, WorkloadSpec

WINDOWS = (900.0, 3600.0)


def random_share(rng: np.random.Generator, index: int) -> tuple[WorkloadSpec, float]:
    n = int(np.exp(rng.uniform(np.log(3), np.log(600))))
    if rng.random() < 0.5:
        weights = 1.0 / np.arange(1, n + 1) ** rng.uniform(0.6, 1.2)
    else:
        weights = rng.choice([4.0, 2.0, 1.0], n)
    ranks = [int(rng.choice([8, 16, 32]))] * n if rng.random() < 0.5 else [int(r) for r in rng.choice([8, 16, 32], n)]
    total = float(np.exp(rng.uniform(np.log(2.0), np.log(40.0))))
    rates = weights / weights.sum() * total
    adapters = tuple(AdapterSpec(id=f"s{index}a{i}", rank=r, rate_req_s=float(x)) for i, (r, x) in enumerate(zip(ranks, rates)))
    return WorkloadSpec(adapters=adapters), total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=int, default=200)
    parser.add_argument("--profile", default="llama-3.1-8b-instruct")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--window", type=float, default=3600.0, help="the acceptance rule's window_s")
    parser.add_argument("--max-wait", type=float, default=60.0, help="the acceptance rule's max_wait_s ('inf': none)")
    parser.add_argument("--out", default=None, help="write one row per share as CSV")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    rule = AcceptanceRule(window_s=args.window, max_wait_s=None if math.isinf(args.max_wait) else args.max_wait)
    check = CostModelCheck(rule=rule)
    rng = np.random.default_rng(args.seed)
    cases = []
    for i in range(args.shares):
        workload, total = random_share(rng, i)
        rank = server_rank(profile, [a.rank for a in workload.adapters])
        slots = [s for s in slot_candidates(profile, rank, len(workload.adapters), SLOT_CANDIDATES)
                 if kv_tokens_or_none(profile, s, rank) is not None]
        max_loras = int(rng.choice(slots))
        verdict = check.evaluate(workload.adapters, profile)
        option = next(o for o in verdict.options if o.max_loras == max_loras)
        server = ServerConfig(max_loras=max_loras, max_cpu_loras=len(workload.adapters), max_lora_rank=rank,
                              client_max_waiting=REFERENCE_CLIENT_MAX_WAITING)
        cases.append((workload, total, server, option))
    started = time.perf_counter()
    tasks = [SimulationTask(workload=w, server=s, profile=profile, duration_s=d, seed=0)
             for w, _, s, _ in cases for d in WINDOWS]
    results = simulate_many(tasks, workers=args.workers)
    rows = []
    for k, (workload, total, server, option) in enumerate(cases):
        short, long_ = results[2 * k], results[2 * k + 1]
        rows.append({
            "adapters": len(workload.adapters), "rate_req_s": round(total, 3), "max_lora_rank": server.max_lora_rank,
            "max_loras": server.max_loras, "check_refused": not option.accepted,
            "check_pressure": round(option.pressure, 3), "check_deciding": option.deciding,
            "check_tok_s": round(option.predicted_tok_s, 1),
            "twin_starved_900": short.starved, "twin_starved_3600": long_.starved,
            "twin_ratio_900": round(short.summary["throughput_over_offered"], 4),
            "twin_ratio_3600": round(long_.summary["throughput_over_offered"], 4),
            "twin_itl_ms": round(long_.summary["mean_itl_ms"], 2),
            "twin_mean_ttft_s": _round(long_.mean_ttft_s),
            "check_wait_s": round(option.wait_s, 2),
            "twin_idle_start_ttft_s": _round(long_.idle_start_ttft_s),
        })
    print(f"{len(rows)} shares, {len(tasks)} twin runs in {time.perf_counter() - started:.0f} s")
    accepted = [r for r in rows if not r["check_refused"]]
    for window in (900, 3600):
        starved = [r for r in rows if r[f"twin_starved_{window}"]]
        false_accept = [r for r in accepted if r[f"twin_starved_{window}"]]
        false_reject = [r for r in rows if r["check_refused"] and not r[f"twin_starved_{window}"]]
        print(f"twin {window} s: starved {len(starved)}; check accepts {len(accepted)}, of which the twin starves "
              f"{len(false_accept)}; check rejects {len(rows) - len(accepted)}, of which the twin does not starve {len(false_reject)}")
        for r in false_accept:
            print("  false accept:", r)
    _print_wait_error(rows)
    if args.out:
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _print_wait_error(rows: list[dict]) -> None:
    """The predicted wait for a place in the batch against the twin's: the mean TTFT of requests
    sent while their adapter was idle, on shares where the places are full and the twin keeps up."""
    pairs = [(r["check_wait_s"], r["twin_idle_start_ttft_s"]) for r in rows
             if 0 < r["check_wait_s"] < float("inf") and r["twin_idle_start_ttft_s"] and r["twin_ratio_3600"] > 0.9]
    if not pairs:
        return
    predicted = np.array([pred for pred, _ in pairs])
    ratio = np.array([twin / pred for pred, twin in pairs])
    q = np.quantile(ratio, [0.1, 0.25, 0.5, 0.75, 0.9])
    print(f"wait for a place, twin (1 h, idle-start TTFT) / predicted, {len(pairs)} saturated shares the twin keeps up: "
          f"median {q[2]:.2f}, quartiles {q[1]:.2f}-{q[3]:.2f}, 10-90% {q[0]:.2f}-{q[4]:.2f}")
    sizes = []
    for lo, hi in ((0, 10), (10, 60), (60, 300), (300, float("inf"))):
        inside = (predicted >= lo) & (predicted < hi)
        if inside.any():
            sizes.append(f"{lo:g}-{hi:g} s: {np.median(ratio[inside]):.2f} ({inside.sum()})")
    print("  median by predicted wait:", "; ".join(sizes))


if __name__ == "__main__":
    sys.exit(main())
