"""The twin's latency tails against the real runs, in the latency regime (real mean TTFT <= 10 s).

Usage: python scripts/check_tails.py [--seeds 0] [--workers 2] [--sets MODEL:SET,...]
       [--baseline] [--ablate] [--set FIELD=VALUE ...] [--json OUT]

Replays every ok run of the regime through the twin as `loratwin validate` does (validate.replay)
and prints, per model and source set, the half-SMAPE and the median twin/real ratio of every
latency statistic and of throughput (validate.errors). `--baseline` adds the same table with every
tail mechanism of the profiles turned off (the twin before them); `--ablate` one table per mechanism
turned off (when there are several); `--set` overrides a field of the profiles' `tails` section.
The tail constants were fitted by scripts/fit_tails.py on dt_modelling runs only; the llama
ml_test rows are runs never fitted on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

RUNS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-vllm" / "runs.csv"
if not RUNS.exists():
    RUNS = Path("/work/shared/data/real-vllm/runs.csv")
SETS = ("llama-3.1-8b-instruct:dt_modelling", "qwen-2.5-7b-instruct:dt_modelling", "llama-3.1-8b-instruct:ml_test")


def latency_runs(sets=SETS, runs_path=RUNS):
    """The ok runs of `sets` ("model:source_set") in the latency regime (validate.errors)."""
    from loratwin.validate.errors import in_latency_regime
    from loratwin.validate.runs import load_runs

    wanted = {tuple(s.split(":")) for s in sets}
    return [r for r in load_runs(runs_path)
            if (r.model, r.source_set) in wanted and r.has_metrics and in_latency_regime(r)]


def with_tails(overrides: dict[str, float] | None):
    """profile_for(model): the built-in profile with `overrides` of its tails fields."""
    from loratwin.profiles import load_profile

    def profile_for(model: str):
        profile = load_profile(model)
        if overrides:
            profile = profile.model_copy(update={"tails": profile.tails.model_copy(update=overrides)})
        return profile

    return profile_for


def print_table(title: str, rows: list[dict]) -> None:
    from loratwin.validate.errors import METRICS, tail_cell

    print(f"\n{title}")
    print(f"{'model / set (runs)':42s}" + "".join(f"{m.removesuffix('_ms'):>16s}" for m in METRICS))
    for row in rows:
        r = row["latency_regime"]
        label = f"{row['model']} {row['source_set']} ({r['runs']})"
        print(f"{label:42s}" + "".join(f"{tail_cell(r[m]):>16s}" for m in METRICS))


def main(argv=None):
    from loratwin.profiles import load_profile
    from loratwin.validate.errors import error_table
    from loratwin.validate.replay import replay_runs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--baseline", action="store_true")
    p.add_argument("--ablate", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a tails field of the profiles (for trying values)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = latency_runs(args.sets.split(","))
    print(f"{len(runs)} runs in the latency regime, seeds {seeds}", file=sys.stderr)
    switches = load_profile("llama-3.1-8b-instruct").tails.switches()
    overrides = {k: float(v) for k, v in (item.split("=", 1) for item in args.set)}
    variants = {"twin": overrides}
    if args.baseline:
        variants["without tail mechanisms"] = {f: 0.0 for fields in switches.values() for f in fields}
    if args.ablate and len(switches) > 1:
        for name, fields in switches.items():
            variants[f"without {name}"] = {**overrides, **dict.fromkeys(fields, 0.0)}
    out = {}
    for name, tails in variants.items():
        rows = error_table(replay_runs(runs, with_tails(tails), seeds=seeds, workers=args.workers))
        print_table(f"{name}: half-SMAPE and x median twin/real ratio", rows)
        out[name] = {f"{row['model']} {row['source_set']}": row["latency_regime"] for row in rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
