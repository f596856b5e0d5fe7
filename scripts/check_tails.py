"""The twin's latency tails against the real runs, in the latency regime (real mean TTFT <= 10 s).

Usage: python scripts/check_tails.py [--seeds 0] [--workers 2] [--sets llama:dt_modelling,...]
       [--ablate] [--baseline] [--json OUT] [--limit N]

Replays every ok run of the regime through the twin (the run's rates, adapters, server flags and
prompt-pool lengths, as `loratwin validate` does) and prints, per model and source set, the
half-SMAPE and the median twin/real ratio of mean/median/p99 TTFT, mean/median/p99 ITL, mean TPOT
and throughput. `--baseline` adds the same table with every tail mechanism of the profile turned
off (the twin before them); `--ablate` one more table per mechanism with that one turned off.
The profiles' tail constants were fitted by scripts/fit_tails.py on dt_modelling runs only; the
llama ml_test rows are runs never fitted on.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RUNS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-vllm" / "runs.csv"
if not RUNS.exists():
    RUNS = Path("/work/shared/data/real-vllm/runs.csv")
LATENCY_REGIME_TTFT_MS = 10_000.0
# measured column -> twin summary key
METRICS = {
    "mean_ttft_ms": "mean_ttft_ms",
    "median_ttft_ms": "p50_ttft_ms",
    "p99_ttft_ms": "p99_ttft_ms",
    "mean_itl_ms": "mean_itl_ms",
    "median_itl_ms": "p50_itl_ms",
    "p99_itl_ms": "p99_itl_ms",
    "mean_tpot_ms": "mean_tpot_ms",
    "total_tok_s": "total_tok_s",
}
SETS = ("llama-3.1-8b-instruct:dt_modelling", "qwen-2.5-7b-instruct:dt_modelling", "llama-3.1-8b-instruct:ml_test")


def latency_runs(sets=SETS, runs_path=RUNS):
    """The ok runs of `sets` ("model:source_set") whose real mean TTFT is at most 10 s."""
    from loratwin.validate.runs import load_runs

    wanted = {tuple(s.split(":")) for s in sets}
    with open(runs_path, newline="") as f:
        rows = {row["run_id"]: row for row in csv.DictReader(f)}
    runs = [
        r for r in load_runs(runs_path)
        if (r.model, r.source_set) in wanted and r.has_metrics
        and r.measured.get("mean_ttft_ms") is not None and r.measured["mean_ttft_ms"] <= LATENCY_REGIME_TTFT_MS
    ]
    # the tail columns, read here whatever the runs loader keeps
    for r in runs:
        r.measured.update({m: float(rows[r.run_id][m]) for m in METRICS if rows[r.run_id].get(m)})
    return runs


def replay_one(task):
    """The twin's summary for one (run, profile overrides, seed)."""
    from loratwin.profiles import load_profile
    from loratwin.twin import simulate
    from loratwin.validate.replay import REFERENCE_CLIENT_CAP, run_duration
    from loratwin.validate.runs import run_requests, run_server, run_workload

    run, tails, seed = task
    profile = load_profile(run.model)
    if tails is not None:
        profile = profile.model_copy(update={"tails": profile.tails.model_copy(update=tails)})
    duration = run_duration(run)
    workload = run_workload(run, seed)
    result = simulate(
        workload, run_server(run, REFERENCE_CLIENT_CAP), profile, duration_s=duration, seed=seed,
        requests=run_requests(run, workload, profile, duration, seed), outputs_requested=True,
    )
    return {k: result.summary.get(v) for k, v in METRICS.items()}


def replay(runs, tails, seeds, workers):
    """Per run, the twin's metrics averaged over seeds (`tails`: overrides of the profile's tail fields)."""
    tasks = [(r, tails, s) for r in runs for s in seeds]
    if workers == 1:
        outs = [replay_one(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            outs = list(pool.map(replay_one, tasks, chunksize=1))
    n = len(seeds)
    per_run = []
    for i in range(len(runs)):
        chunk = outs[i * n:(i + 1) * n]
        per_run.append({k: float(np.mean([c[k] for c in chunk if c[k] is not None])) if any(c[k] is not None for c in chunk)
                        else None for k in METRICS})
    return per_run


def table(runs, twin):
    """{(model, set): {metric: (n, half-SMAPE %, median twin/real)}}."""
    from loratwin.validate.errors import half_smape

    rows = {}
    for key in sorted({(r.model, r.source_set) for r in runs}):
        row = {}
        for metric in METRICS:
            pairs = [(r.measured[metric], t[metric]) for r, t in zip(runs, twin)
                     if (r.model, r.source_set) == key and r.measured.get(metric) and t[metric] is not None]
            y, p = (np.array(v, float) for v in zip(*pairs))
            row[metric] = (len(pairs), half_smape(y, p), float(np.median(p / y)))
        rows[key] = row
    return rows


def print_table(title, rows):
    print(f"\n{title}")
    print(f"{'model / set':38s}" + "".join(f"{m[:-3] if m.endswith('_ms') else m:>16s}" for m in METRICS))
    for (model, source_set), row in rows.items():
        n = row["mean_ttft_ms"][0]
        print(f"{model + ' ' + source_set + f' ({n})':38s}"
              + "".join(f"{row[m][1]:8.1f}% x{row[m][2]:5.2f}" for m in METRICS))


def main(argv=None):
    from loratwin.profiles import load_profile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--baseline", action="store_true")
    p.add_argument("--ablate", action="store_true")
    p.add_argument("--limit", type=int, default=0, help="every k-th run only (for quick checks)")
    p.add_argument("--json", type=Path)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a tails field of the profiles (for trying values)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = latency_runs(args.sets.split(","))
    if args.limit:
        runs = runs[:: args.limit]
    print(f"{len(runs)} runs in the latency regime, seeds {seeds}", file=sys.stderr)
    switches = load_profile("llama-3.1-8b-instruct").tails.switches()
    overrides = {k: float(v) for k, v in (item.split("=", 1) for item in args.set)}
    variants = {"twin": overrides or None}
    if args.baseline:
        variants["without tail mechanisms"] = {f: 0.0 for fields in switches.values() for f in fields}
    if args.ablate and len(switches) > 1:
        for name, fields in switches.items():
            variants[f"without {name}"] = dict.fromkeys(fields, 0.0)
    out = {}
    for name, tails in variants.items():
        rows = table(runs, replay(runs, tails, seeds, args.workers))
        print_table(f"{name}: half-SMAPE and median twin/real ratio", rows)
        out[name] = {f"{m} {s}": row for (m, s), row in rows.items()}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
