"""Check the shipped models and `recommend` against the real vLLM runs they were never fitted on.

    python scripts/prove_recommend.py [--runs ../shared/data/real-vllm/runs.csv] [--models DIR] [--json]

For each Llama `ml_test` group of the real runs (three rate levels, a rank cycle; 55 measured
(max_loras, served) points): recommend is given 384 adapters cycling the group's rates and ranks;
its (served, max_loras) is evaluated at the measured point with the most served adapters not above
ours (among those, the max_loras closest to ours). Reported: whether the real run there starved
(1 - total_tok_s / approx_offered_tok_s >= 0.1) and the regret 1 - its throughput / the best
throughput of a real run of the group that did not starve. The same for the optimum models alone,
and for recommend's answer refined with the twin (`refine`: local search from the models' answer,
one simulated hour per point, the reference client's queue cap). The real runs judge starvation by
the published GPU-level rule alone, so recommend runs here without its wait limit (`max_wait_s=None`).
Then the published method's error of the optimum models against labels derived from the real runs,
and the per-configuration models on every real run: throughput error, starvation macro-F1 and
prediction time per configuration.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.learn.bundle import load_model_set
from loratwin.learn.evaluators import predict, predict_target
from loratwin.learn.features import as_matrix, config_features
from loratwin.learn.zoo import macro_f1, paper_error
from loratwin.plan.recommend import recommend, refine, workload_mix
from loratwin.profiles import load_profile
from loratwin.twin.config import REFERENCE_CLIENT_MAX_WAITING
from loratwin.workload import AdapterSpec, WorkloadSpec

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "llama-3.1-8b-instruct"
POOL = 384
THRESHOLD = 0.1
STRATEGIES = ["recommend", "optimum_models", "recommend_refined"]
TITLES = {"recommend": "recommend (models)", "optimum_models": "optimum models alone",
          "recommend_refined": "recommend + twin refinement"}


def load_groups(path: Path) -> dict[tuple[tuple[float, ...], tuple[int, ...]], list[dict[str, Any]]]:
    groups: dict[tuple[tuple[float, ...], tuple[int, ...]], list[dict[str, Any]]] = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["source_set"] != "ml_test" or row["model"] != PROFILE:
                continue
            rates = tuple(sorted((float(r) for r in row["rate_values"].split()), reverse=True))
            ranks = tuple(int(r) for r in row["adapter_rank_cycle"].split())
            groups[(rates, ranks)].append(row)
    return dict(sorted(groups.items(), key=lambda item: item[0], reverse=True))


def ok_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        if row["status"] != "ok" or not row["total_tok_s"]:
            continue
        throughput, offered = float(row["total_tok_s"]), float(row["approx_offered_tok_s"])
        out.append({"served": int(row["served_adapters"]), "max_loras": int(row["max_loras"]),
                    "total_tok_s": throughput, "starved": 1.0 - throughput / offered >= THRESHOLD, "row": row})
    return out


def measured_point(runs: list[dict[str, Any]], served: int, max_loras: int) -> dict[str, Any] | None:
    """The measured run with the most served adapters not above `served`; then max_loras closest to ours."""
    below = [r for r in runs if r["served"] <= served]
    if not below:
        return None
    most = max(r["served"] for r in below)
    return min((r for r in below if r["served"] == most), key=lambda r: (abs(r["max_loras"] - max_loras), r["max_loras"]))


def real_labels(runs: list[dict[str, Any]]) -> dict[str, float] | None:
    """Per max_loras the largest served count before the first starved run; the best by throughput."""
    by_slots: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_slots[r["max_loras"]].append(r)
    frontier = []
    for rs in by_slots.values():
        last = None
        for r in sorted(rs, key=lambda r: r["served"]):
            if r["starved"]:
                break
            last = r
        if last is not None:
            frontier.append(last)
    if not frontier:
        return None
    best = min(frontier, key=lambda r: (-r["total_tok_s"], r["max_loras"], r["served"]))
    return {"served": best["served"], "max_loras": best["max_loras"], "total_tok_s": best["total_tok_s"]}


def cycling_workload(rates: tuple[float, ...], ranks: tuple[int, ...], count: int = POOL) -> WorkloadSpec:
    return WorkloadSpec(adapters=tuple(
        AdapterSpec(id=f"a{i:03d}", rank=ranks[i % len(ranks)], rate_req_s=rates[i % len(rates)]) for i in range(count)
    ))


def evaluate(runs_csv: Path, models_dir: str | None, with_twin: bool = True, optimum_model: str | None = None
             ) -> dict[str, Any]:
    profile = load_profile(PROFILE)
    models = load_model_set(models_dir or PROFILE)
    groups = load_groups(runs_csv)
    table, label_rows = [], []
    for (rates, ranks), rows in groups.items():
        runs = ok_runs(rows)
        safe = [r for r in runs if not r["starved"]]
        best = max(r["total_tok_s"] for r in safe) if safe else None
        workload = cycling_workload(rates, ranks)
        # the real runs judge by the published GPU-level rule only: no wait limit here
        rec = recommend(workload, profile, models=models, optimum_model=optimum_model, max_wait_s=None)
        entry: dict[str, Any] = {"group": "/".join(f"{r:g}" for r in rates) + " ranks " + "-".join(map(str, ranks)),
                                 "best_real": best}
        strategies = [("recommend", rec.served, rec.max_loras),
                      ("optimum_models", rec.optimum_models["served"], rec.optimum_models["max_loras"])]
        if with_twin:
            # the twin as the reference client ran: its queue capped at 25,500 waiting requests
            refined = refine(rec, workload, profile, client_max_waiting=REFERENCE_CLIENT_MAX_WAITING, max_wait_s=None)
            strategies.append(("recommend_refined", refined["served"], refined["max_loras"]))
            entry["refine_simulations"] = refined["simulations"]
        for name, served, slots in strategies:
            point = measured_point(runs, served, slots)
            entry[name] = {
                "served": served, "max_loras": slots,
                "measured_at": None if point is None else [point["served"], point["max_loras"]],
                "starved": None if point is None else point["starved"],
                "regret": None if point is None or best is None else 1.0 - point["total_tok_s"] / best,
            }
        table.append(entry)
        labels = real_labels(runs)
        if labels is not None:
            o = rec.optimum_models
            label_rows.append((labels, (o["served"], o["max_loras"], o["best_total_tok_s"]),
                               (o["best_served"], o["best_max_loras"])))

    summary: dict[str, Any] = {"groups": table, "strategies": STRATEGIES[: 3 if with_twin else 2]}
    for name in summary["strategies"]:
        starved = [e["group"] for e in table if e[name]["starved"]]
        regrets = [e[name]["regret"] for e in table if e[name]["regret"] is not None]
        regrets_not_starved = [e[name]["regret"] for e in table if e[name]["regret"] is not None and not e[name]["starved"]]
        summary[name] = {"starved_groups": starved, "mean_regret": float(np.mean(regrets)),
                         "mean_regret_not_starved": float(np.mean(regrets_not_starved)) if regrets_not_starved else None}
    truth = np.array([[l["served"], l["max_loras"], l["total_tok_s"]] for l, _, _ in label_rows])
    predicted = np.array([p for _, p, _ in label_rows])
    raw = np.array([r for _, _, r in label_rows])
    summary["optimum_error_pct"] = {
        "served": paper_error(truth[:, 0], predicted[:, 0]), "max_loras": paper_error(truth[:, 1], predicted[:, 1]),
        "total_tok_s": paper_error(truth[:, 2], predicted[:, 2]),
        "served_unsnapped": paper_error(truth[:, 0], raw[:, 0]), "max_loras_unsnapped": paper_error(truth[:, 1], raw[:, 1]),
        "groups": len(label_rows),
    }
    summary["per_configuration"] = per_configuration(groups, profile, models)
    summary["models"] = {"throughput": models.default_family("total_tok_s"), "starvation": models.default_family("starved"),
                         "optimum": optimum_model or models.default_family("best_served"),
                         "directory": str(models.directory)}
    return summary


def per_configuration(groups: dict, profile: Any, models: Any) -> dict[str, Any]:
    rows, truth_tok, truth_starved = [], [], []
    for (rates, ranks), group_rows in groups.items():
        mix = workload_mix(cycling_workload(rates, ranks), profile)
        for run in ok_runs(group_rows):
            head = mix.head(run["served"])
            rank = int(run["row"]["max_lora_rank"])
            features = config_features(head, run["max_loras"], rank)
            rows.append(features)
            truth_tok.append(run["total_tok_s"])
            truth_starved.append(run["starved"])
    out: dict[str, Any] = {"runs": len(rows), "families": {}}
    for family in models.families("starved"):
        if family not in models.families("total_tok_s"):
            continue
        tok_model, starve_model = models.model("total_tok_s", family), models.model("starved", family)
        X = as_matrix(rows, tok_model["features"])
        X_starve = as_matrix(rows, starve_model["features"])

        started = time.perf_counter()
        for _ in range(5):
            predicted_tok = predict_target(tok_model, X)
            predicted_starved = predict(starve_model, X_starve) >= 0.5
        batch_ms = (time.perf_counter() - started) / 5 * 1000 / len(X)
        started = time.perf_counter()
        for x, xs in zip(X[:100], X_starve[:100], strict=True):
            predict_target(tok_model, x[None, :])
            predict(starve_model, xs[None, :])
        single_ms = (time.perf_counter() - started) * 1000 / min(100, len(X))
        out["families"][family] = {
            "throughput_error_pct": paper_error(np.array(truth_tok), predicted_tok),
            "starvation_macro_f1": macro_f1(np.array(truth_starved), predicted_starved),
            "predict_ms_per_config_batch": batch_ms,
            "predict_ms_per_config_one_at_a_time": single_ms,
        }
    return out


def print_report(s: dict[str, Any]) -> None:
    print(f"models: {s['models']}")
    names = s["strategies"]
    header = ["group (rates req/s, ranks)"] + [f"{TITLES[n]}: (served, max_loras) -> measured at, starved, regret" for n in names]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for e in s["groups"]:
        cells = [e["group"]]
        for name in names:
            r = e[name]
            at = "-" if r["measured_at"] is None else "({}, {})".format(*r["measured_at"])
            starved = "-" if r["starved"] is None else ("STARVED" if r["starved"] else "ok")
            regret = "-" if r["regret"] is None else f"{100 * r['regret']:.2f}%"
            cells.append(f"({r['served']}, {r['max_loras']}) -> {at}, {starved}, {regret}")
        print("| " + " | ".join(cells) + " |")
    for name in names:
        r = s[name]
        nsr = "-" if r["mean_regret_not_starved"] is None else f"{100 * r['mean_regret_not_starved']:.2f}%"
        print(f"{TITLES[name]}: starved in {len(r['starved_groups'])} of {len(s['groups'])} groups {r['starved_groups']}; "
              f"mean regret {100 * r['mean_regret']:.2f}% (groups not starved: {nsr})")
    e = s["optimum_error_pct"]
    print(f"\noptimum models vs labels from the real runs ({e['groups']} groups), paper error: served {e['served']:.2f}%, "
          f"max_loras {e['max_loras']:.2f}%, throughput {e['total_tok_s']:.2f}% "
          f"(before rounding to the grid: served {e['served_unsnapped']:.2f}%, max_loras {e['max_loras_unsnapped']:.2f}%)")
    pc = s["per_configuration"]
    print(f"\nper-configuration models on {pc['runs']} real runs:")
    print("| family | throughput error % | starvation macro-F1 | ms/config (batch) | ms/config (one at a time) |")
    print("|---|---|---|---|---|")
    for family, r in pc["families"].items():
        print(f"| {family} | {r['throughput_error_pct']:.2f} | {r['starvation_macro_f1']:.3f} | "
              f"{r['predict_ms_per_config_batch']:.5f} | {r['predict_ms_per_config_one_at_a_time']:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=ROOT.parent / "shared" / "data" / "real-vllm" / "runs.csv")
    parser.add_argument("--models", default=None, help="models directory (default: the shipped llama models)")
    parser.add_argument("--no-twin", action="store_true", help="skip the twin refinement (models only)")
    parser.add_argument("--optimum-model", default=None, help="family of the optimum models (default: the profile's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    summary = evaluate(args.runs, args.models, with_twin=not args.no_twin, optimum_model=args.optimum_model)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        print_report(summary)


if __name__ == "__main__":
    main()
