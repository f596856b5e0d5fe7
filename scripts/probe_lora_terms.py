"""Which LoRA step terms can explain both the real runs and the LoRA-overhead runs? One replay, then
static least-squares solves with different free terms.

    python scripts/probe_lora_terms.py [--data ../shared/data] [--model M] [--profile P] [--weight 1] [--workers 1]

Replays the model's dt_modelling runs (runs.csv) once with the profile (seed 0), takes the
twin-in-the-loop fit's equations from that replay (`twin_fit.fit_equations`: each run's mean ITL,
and the mean step of capacity-bound runs) plus the LoRA-overhead runs (calibration/lora_overhead.csv,
each weighing `--weight` runs), and solves each variant once, with the dynamics of that one replay
(a full fit replays again; these are first-round figures). Prints, per variant, the coefficients and
the mean relative residual in % of the run ITL rows, the run step rows and the LoRA-overhead rows.
Variants:
- calibrate's free terms before the cost per prompt token x slot (OLD_TERMS), on the runs alone and
  with the LoRA-overhead runs;
- the same plus lora_per_slot_ms (a cost linear in max_loras);
- calibrate's free terms (RUN_TERMS: the same plus lora_per_prefill_token_per_slot_ms, since vLLM
  0.8.5's LoRA kernels run over every token of the step, prompt tokens included, with thread blocks
  per slot), with the LoRA-overhead runs and on the runs alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from loratwin.profiles import load_profile
from loratwin.validate import load_runs, replay_runs
from loratwin.validate.lora_overhead import LORA_OVERHEAD_FILE, read_lora_overhead
from loratwin.validate.replay import STEP_TERM_FIELDS
from loratwin.validate.twin_fit import RUN_TERMS, fit_equations

ROOT = Path(__file__).resolve().parents[1]
PROMPT_X_SLOT = "lora_per_prefill_token_per_slot_ms"
OLD_TERMS = tuple(name for name in RUN_TERMS if name != PROMPT_X_SLOT)


def solve(eq, profile, free, rows, weights):
    st = profile.step_time.model_dump()
    fixed = np.array([0.0 if name in free else st[name] for name in STEP_TERM_FIELDS])
    x = eq.terms[:, [STEP_TERM_FIELDS.index(name) for name in free]]
    target = eq.target_ms - eq.terms @ fixed
    coef, _ = nnls((eq.scale[:, None] * x)[rows], (eq.scale * target)[rows])
    # relative to the measured time: scale = weight / measured
    residual = 100 * np.abs(x @ coef - target) * eq.scale / weights
    return dict(zip(free, coef, strict=True)), residual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", default="llama-3.1-8b-instruct")
    parser.add_argument("--profile", default=None, help="default: the built-in profile of the model")
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    profile = load_profile(args.profile or args.model)
    runs = [r for r in load_runs(args.data / "real-vllm" / "runs.csv")
            if r.model == args.model and r.source_set == "dt_modelling"]
    results = replay_runs(runs, lambda _m: profile, seeds=(0,), workers=args.workers)
    overhead = read_lora_overhead(args.data / "calibration" / LORA_OVERHEAD_FILE, args.model)
    eq = fit_equations(results, overhead.equations(args.weight))
    n_cal = len(overhead)
    is_cal = np.arange(len(eq.target_ms)) >= len(eq.target_ms) - n_cal
    kinds = {"run ITL": eq.itl_row, "run step": ~eq.itl_row & ~is_cal, "LoRA-overhead": is_cal}
    print(f"{args.model}: {eq.itl_row.sum()} run ITL rows, {(~eq.itl_row & ~is_cal).sum()} run step rows, "
          f"{n_cal} LoRA-overhead rows (weight {args.weight:g}); profile {args.profile or args.model}")
    variants = [
        ("without prompt token x slot, runs only", OLD_TERMS, ~is_cal),
        ("without prompt token x slot + LoRA-overhead runs", OLD_TERMS, np.ones_like(is_cal)),
        ("+ lora_per_slot_ms", (*OLD_TERMS, "lora_per_slot_ms"), np.ones_like(is_cal)),
        ("RUN_TERMS (+ prompt token x slot) + LoRA-overhead runs", RUN_TERMS, np.ones_like(is_cal)),
        ("RUN_TERMS (+ prompt token x slot), runs only", RUN_TERMS, ~is_cal),
    ]
    for label, free, rows in variants:
        coef, residual = solve(eq, profile, free, rows, np.where(is_cal, args.weight, 1.0))
        errors = ", ".join(f"{kind} {residual[mask].mean():.2f}%" for kind, mask in kinds.items())
        print(f"\n{label}: mean |residual| {errors}")
        print("  " + ", ".join(f"{name} {value:.6g}" for name, value in coef.items()))


if __name__ == "__main__":
    main()
