"""Fit the profiles' tail constants (TailModel) on the dt_modelling runs of the latency regime.

Usage: python scripts/fit_tails.py [--models llama-3.1-8b-instruct,qwen-2.5-7b-instruct]
       [--seed 0] [--workers 2] [--write | --scrapes-only | --joint]

Metrics-scrape blackout. The reference client polled /metrics and slept 2 s between polls, so a
run's time-series samples (runs.csv: npy_samples over npy_span_s) measure how long a scrape took:
span / (samples - 1) - 2 s. Each run is replayed once through the twin with the mechanism off; the
twin's running requests and the series of vLLM's LoRA-info gauge so far, with the adapter names
they list (twin.lora_info), are averaged over the run's polls, and scrape_ms = base_ms +
ms_per_adapter x served adapters + ms_per_running x running + ms_per_series x series +
ms_per_listed_name x names is fitted by non-negative least squares over the runs of each model
(seen: base and the served-adapter term come out 0 for both models). Only dt_modelling runs are
used (ml_test is kept for checking: check_tails.py).

First-use stall. Each adapter's first request blocks the API server for first_use_stall_ms (twin.delivery).
With the scrape constants just fitted, the dt_modelling runs of each model are replayed once per
value of `--stall-grid`, and the value with the least mean half-SMAPE of mean TTFT, p99 TTFT and
p99 ITL over them is kept (the same criterion as the blocking share).
`--write` puts the constants and their provenance into the built-in profile YAMLs.

Joint search (`--joint`, prints only). The pass above fits the stall with the share and cv below.
`--joint` tries every blocking share of --share-grid, scrape cv of --cv-grid and stall per model of
--stall-grid together, with the built-in scrape lengths, by the same criterion averaged over the
models' dt_modelling runs (each model's stall moves only its own runs). The share and cv below are
its optimum (seed 0; docs/validation/tails.md gives the tables): share 1.0, cv 0.1, 250 ms for both
models, 9.39 % (cv 0: 9.47 %, cv 0.25: 9.66 %; share 0.7 at best 10.77 %).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_tails import RUNS, latency_runs

MODELS = ("llama-3.1-8b-instruct", "qwen-2.5-7b-instruct")
# The blocking share and the scrape lengths' coefficient of variation: the optimum of `--joint` on the
# dt_modelling runs of both models (share 0.7 or 1.0 x cv 0-1 x a stall per model, seed 0; module doc).
BLOCKING_SHARE = 1.0
SCRAPE_CV = 0.1
PROFILE_DIR = Path(__file__).resolve().parents[1] / "src" / "loratwin" / "profiles" / "data"


def measured_scrape_ms(row: dict, interval_s: float) -> float | None:
    """A run's mean scrape time (ms) from its poll count, or None if it has too few samples."""
    try:
        samples, span = float(row["npy_samples"]), float(row["npy_span_s"])
    except (KeyError, ValueError):
        return None
    if samples < 10:
        return None
    return 1000 * (span / (samples - 1) - interval_s)


def poll_state(task) -> tuple[float, float, float]:
    """The twin's running requests, LoRA-info series and adapter names listed in them
    (twin.lora_info), each averaged over the polls of one run (mechanism off, polls every interval
    + the run's measured scrape time)."""
    from loratwin.profiles import load_profile
    from loratwin.twin import simulate
    from loratwin.twin.lora_info import lora_info_series
    from loratwin.validate.replay import REFERENCE_CLIENT_CAP, run_duration
    from loratwin.validate.runs import run_requests, run_server, run_workload

    run, seed, period_s = task
    profile = load_profile(run.model)
    off = dict.fromkeys(profile.tails.switches()["metrics_scrape"], 0.0)
    profile = profile.model_copy(update={"tails": profile.tails.model_copy(update=off)})
    duration = run_duration(run)
    workload = run_workload(run, seed)
    result = simulate(workload, run_server(run, REFERENCE_CLIENT_CAP), profile, duration_s=duration, seed=seed,
                      requests=run_requests(run, workload, profile, duration, seed), outputs_requested=True)
    batch, end_s = result.steps["batch"], result.steps["end_s"]
    if not len(batch):
        return 0.0, 0.0, 0.0
    index = {a.id: i for i, a in enumerate(workload.adapters)}
    req = result.requests

    def ns(seconds):
        return np.where(np.isfinite(seconds), np.round(np.nan_to_num(seconds) * 1e9), -1).astype(np.int64)

    gauge = lora_info_series(ns(end_s), ns(req["sent_s"]), ns(req["first_token_s"]), ns(req["finish_s"]),
                             np.array([index[a] for a in req["adapter_id"]], np.int64), len(workload.adapters))
    polls = np.arange(period_s, duration, period_s)
    k = np.searchsorted(end_s, polls, side="right")
    running = np.where(k < len(batch), batch[np.minimum(k, len(batch) - 1)], 0)
    before = np.maximum(k - 1, 0)  # the gauge as the last step before the poll left it
    series = np.where(k > 0, gauge.series[before], 0)
    names = np.where(k > 0, gauge.names[before], 0)
    return float(running.mean()), float(series.mean()), float(names.mean())


SCRAPE_TERMS = ("metrics_scrape_base_ms", "metrics_scrape_ms_per_adapter", "metrics_scrape_ms_per_running",
                "metrics_scrape_ms_per_series", "metrics_scrape_ms_per_listed_name")


def fit(terms: np.ndarray, scrape_ms: np.ndarray, first: int = len(SCRAPE_TERMS)) -> np.ndarray:
    """Least squares scrape_ms = terms @ coef, all >= 0, on the first `first` of SCRAPE_TERMS (the
    columns of `terms`; the rest held at 0: first=3 is the served-adapter form)."""
    from scipy.optimize import nnls

    coef = np.zeros(terms.shape[1])
    coef[:first] = nnls(terms[:, :first], scrape_ms)[0]
    return coef


STALL_CRITERION = ("mean_ttft_ms", "p99_ttft_ms", "p99_itl_ms")


def criterion(model: str, runs: list, overrides: dict[str, float], seed: int, workers: int) -> float:
    """The mean half-SMAPE (%) of STALL_CRITERION over the latency-regime `runs` of `model`, replayed
    with `overrides` of the built-in profile's tails."""
    from check_tails import with_tails

    from loratwin.validate.errors import error_table
    from loratwin.validate.replay import replay_runs

    rows = error_table(replay_runs(runs, with_tails(overrides), seeds=[seed], workers=workers))
    regime = next(r["latency_regime"] for r in rows if r["model"] == model)
    return float(np.mean([regime[m]["half_smape"] for m in STALL_CRITERION]))


def fit_first_use_stall(model: str, runs: list, coef: np.ndarray, interval_s: float, grid: list[float],
                        seed: int, workers: int) -> tuple[float, dict[float, float]]:
    """The stall (ms) of `grid` with the least mean half-SMAPE of STALL_CRITERION over `runs`, and
    that error for every value."""
    scrape = {"metrics_poll_interval_s": interval_s, **dict(zip(SCRAPE_TERMS, map(float, coef))),
              "metrics_scrape_blocking_share": BLOCKING_SHARE, "metrics_scrape_cv": SCRAPE_CV}
    error = {stall: criterion(model, runs, {**scrape, "first_use_stall_ms": stall}, seed, workers) for stall in grid}
    return min(error, key=error.get), error


JOINT_SHARES = (0.7, 1.0)
JOINT_CVS = (0.25, 0.5, 0.75, 1.0)
JOINT_STALLS = (0.0, 100.0, 150.0, 200.0, 250.0, 300.0, 400.0)


def joint_search(runs: dict[str, list], shares, cvs, stalls, seed: int, workers: int):
    """Every (blocking share, scrape cv, one stall per model) of the grids, by the mean over the models
    of criterion(); the scrape lengths are the built-in profiles'. A model's stall moves only its own
    runs, so each (share, cv) takes each model's best stall on its own: len(shares) x len(cvs) x
    len(stalls) replays per model, not that times len(stalls) per further model.
    Returns (joint criterion, share, cv, {model: stall}) of the optimum and {(share, cv): {model:
    {stall: criterion}}}."""
    table = {}
    for share in shares:
        for cv in cvs:
            table[share, cv] = {model: {stall: criterion(model, model_runs, {
                "metrics_scrape_blocking_share": share, "metrics_scrape_cv": cv, "first_use_stall_ms": stall},
                seed, workers) for stall in stalls} for model, model_runs in runs.items()}
    options = []
    for (share, cv), errors in table.items():
        best = {model: min(error, key=error.get) for model, error in errors.items()}
        options.append((float(np.mean([errors[m][s] for m, s in best.items()])), share, cv, best))
    return min(options, key=lambda o: o[0]), table


def print_joint(table: dict, optimum: tuple) -> None:
    for (share, cv), errors in table.items():
        best = {model: min(error, key=error.get) for model, error in errors.items()}
        joint = np.mean([errors[m][s] for m, s in best.items()])
        print(f"share {share:g}, cv {cv:g}: joint {joint:.2f}% with " + ", ".join(
            f"{m} {s:g} ms" for m, s in best.items()))
        for model, error in errors.items():
            print(f"  {model}: " + ", ".join(f"{s:g}: {v:.2f}%" for s, v in error.items()))
    value, share, cv, best = optimum
    print(f"optimum: share {share:g}, cv {cv:g}, " + ", ".join(f"{m} {s:g} ms" for m, s in best.items())
          + f" ({value:.2f}%)")


def write_profile(model: str, coef: np.ndarray, n: int, interval_s: float, stall_ms: float) -> None:
    path = PROFILE_DIR / f"{model}.yaml"
    text = path.read_text()
    text = text.split("\ntails:\n")[0].rstrip("\n") + "\n"
    text += (
        "tails:\n"
        f"  metrics_poll_interval_s: {interval_s}\n"
        f"  metrics_scrape_base_ms: {coef[0]:.4f}\n"
        f"  metrics_scrape_ms_per_adapter: {coef[1]:.5f}\n"
        f"  metrics_scrape_ms_per_running: {coef[2]:.5f}\n"
        f"  metrics_scrape_ms_per_series: {coef[3]:.6f}\n"
        f"  metrics_scrape_ms_per_listed_name: {coef[4]:.8f}\n"
        f"  metrics_scrape_blocking_share: {BLOCKING_SHARE}\n"
        f"  metrics_scrape_cv: {SCRAPE_CV}\n"
        f"  first_use_stall_ms: {stall_ms:g}\n"
        "  provenance: 'scripts/fit_tails.py: scrape time from the poll count of runs.csv (npy_span_s\n"
        f"    / (npy_samples - 1) - {interval_s} s) against served adapters, the twin''s running requests and\n"
        "    the series of vLLM''s LoRA-info gauge so far and the adapter names they list (twin.lora_info),\n"
        f"    non-negative least squares over {n} dt_modelling runs of this model with real mean TTFT <= 10 s\n"
        "    (seed 0); not fitted on ml_test.\n"
        "    metrics_scrape_blocking_share, metrics_scrape_cv: the optimum of scripts/fit_tails.py --joint\n"
        "    (share 0.7 or 1.0, cv 0-1, a stall per model; least mean half-SMAPE of mean TTFT, p99 TTFT and\n"
        "    p99 ITL over the dt_modelling runs of both models, seed 0).\n"
        "    first_use_stall_ms: of --stall-grid the one with the least mean half-SMAPE of mean TTFT, p99 TTFT\n"
        "    and p99 ITL over the same dt_modelling runs of this model (seed 0), with the constants above.'\n"
    )
    path.write_text(text)


def model_list(text: str) -> list[str]:
    models = text.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model {unknown[0]!r}; expected some of {', '.join(MODELS)}")
    return models


def counted(least: int):
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}")
        return value
    return check


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def number_list(text: str) -> list[float]:
    """A comma-separated list of non-negative finite numbers (argparse names the flag on error)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or not all(0 <= v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers >= 0, got {text!r}")
    return values


def scrape_terms(runs: list, rows: dict, args) -> tuple[list, np.ndarray, np.ndarray]:
    """The runs with a measured scrape time, those times (ms), and per run the terms of SCRAPE_TERMS
    (1, served, and the twin's running, series and names listed averaged over the polls)."""
    measured = [measured_scrape_ms(rows[r.run_id], args.interval_s) for r in runs]
    runs = [r for r, m in zip(runs, measured) if m is not None]
    scrape = np.array([m for m in measured if m is not None])
    tasks = [(r, args.seed, args.interval_s + m / 1000) for r, m in zip(runs, scrape)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        state = np.array(list(pool.map(poll_state, tasks))).reshape(-1, 3)
    served = np.array([float(r.served_adapters) for r in runs])
    return runs, scrape, np.c_[np.ones_like(served), served, state]


def median_error(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.median(np.abs(predicted - measured) / measured) * 100)


def check_scrapes(model: str, coef: np.ndarray, served_only: np.ndarray, rows: dict, args) -> None:
    """Print how the fitted scrape times (and those of the served-adapter form, base + served +
    running, fitted on the same runs) predict the model's ml_test runs, never fitted on."""
    runs = latency_runs([f"{model}:ml_test"])
    if not runs:
        return
    runs, scrape, terms = scrape_terms(runs, rows, args)
    for name, c in (("this fit", coef), ("served-adapter form", served_only)):
        predicted = terms @ c
        print(f"  ml_test check ({len(runs)} runs, not fitted on), {name}: median error "
              f"{median_error(predicted, scrape):.1f}%, x{np.median(predicted / scrape):.2f} median predicted/measured")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=model_list, default=",".join(MODELS), help=f"of {', '.join(MODELS)}")
    p.add_argument("--seed", type=counted(0), default=0)
    p.add_argument("--workers", type=counted(1), default=min(2, os.cpu_count() or 1))
    p.add_argument("--interval-s", type=positive, default=2.0, help="the client's sleep between polls")
    p.add_argument("--stall-grid", type=number_list, default=None,
                   help="first-use stalls (ms) to try, comma separated (default 0,100,200,250,300,350,400,500; "
                        f"with --joint {','.join(f'{s:g}' for s in JOINT_STALLS)})")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--scrapes-only", action="store_true",
                      help="fit and check the scrape lengths only (no stall; writes nothing)")
    mode.add_argument("--joint", action="store_true",
                      help="search share, cv and the stalls together (prints; writes nothing)")
    p.add_argument("--share-grid", type=number_list, default=list(JOINT_SHARES), help="with --joint")
    p.add_argument("--cv-grid", type=number_list, default=list(JOINT_CVS), help="with --joint")
    args = p.parse_args(argv)
    models = args.models
    if args.joint:
        grid = args.stall_grid or list(JOINT_STALLS)
        optimum, table = joint_search({m: latency_runs([f"{m}:dt_modelling"]) for m in models},
                                      args.share_grid, args.cv_grid, grid, args.seed, args.workers)
        print_joint(table, optimum)
        return
    args.stall_grid = args.stall_grid or [0.0, 100.0, 200.0, 250.0, 300.0, 350.0, 400.0, 500.0]
    with open(RUNS, newline="") as f:
        rows = {row["run_id"]: row for row in csv.DictReader(f)}
    for model in models:
        runs, scrape, terms = scrape_terms(latency_runs([f"{model}:dt_modelling"]), rows, args)
        coef = fit(terms, scrape)
        r2 = 1 - ((scrape - terms @ coef) ** 2).sum() / ((scrape - scrape.mean()) ** 2).sum()
        print(f"{model}: {len(runs)} dt_modelling runs; scrape_ms = {coef[0]:.2f} + {coef[1]:.4f} x served "
              f"+ {coef[2]:.4f} x running + {coef[3]:.5f} x series + {coef[4]:.7f} x names listed "
              f"(R^2 {r2:.2f}, median error {median_error(terms @ coef, scrape):.1f}%; "
              f"measured scrape median {np.median(scrape):.0f} ms)")
        check_scrapes(model, coef, fit(terms, scrape, first=3), rows, args)
        if args.scrapes_only:
            continue
        stall, error = fit_first_use_stall(model, runs, coef, args.interval_s, args.stall_grid, args.seed, args.workers)
        print(f"  first_use_stall_ms = {stall:g} (mean half-SMAPE of mean TTFT, p99 TTFT, p99 ITL: "
              + ", ".join(f"{k:g}: {v:.1f}%" for k, v in error.items()) + ")")
        if args.write:
            write_profile(model, coef, len(runs), args.interval_s, stall)
            print(f"  written to {PROFILE_DIR / (model + '.yaml')}")


if __name__ == "__main__":
    main()
