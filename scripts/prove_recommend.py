"""Check `recommend` and the published method against the real vLLM runs they were never fitted on.

    python scripts/prove_recommend.py [--runs ../shared/data/real-vllm/runs.csv] [--models DIR]
        [--check auto] [--max-wait SECONDS] [--groups N] [--no-twin] [--workers 1] [--json]

The real runs: the Llama `ml_test` rows of runs.csv, nine groups (three rate levels, a cycle of
three ranks), each measured at the grid points served, max_loras in {16, 32, 64, 96, 128, 160,
192, 256, 320, 384} with max_loras <= served (55 points a group; only status `ok` counts: the
others did not start, `oom_at_start`, or failed on the cluster). A run with n served adapters
serves the first n of a pool cycling the group's rates from the highest down, beside its rank
cycle (adapter i: the (i mod 3)-th highest rate and the (i mod 3)-th rank of the cycle; the run
ids, e.g. rate_0.4-0.05-0.00625_size_8-16-32, the rate counts and the aggregate rates agree).
So recommend is given 384 such adapters and keeps their order (`keep_order=True`): the adapters it
serves are those of a real run with that many served (its default fill order, the largest rank
first, would serve a mix no real run served).

recommend answers any served count, the real runs exist only on the grid: an answer (served,
max_loras) is looked up at the real run with the largest grid served count <= the recommended
one and the grid max_loras nearest the recommended one, at most that served count (ties: the
smaller). Where that run is missing or failed, the group has no measurement (its status is shown).
Reported: whether the real run there starved (1 - total_tok_s / approx_offered_tok_s >= 0.1, the
published GPU-level rule; the column starved_approx) and the regret 1 - its throughput / the best
throughput of a real run of the group that did not starve. For three answers: recommend (the
estimator of --check, the cost model by default, judged by the acceptance rule), the published
method alone (the optimum models' served and max_loras, on the grid already) and recommend refined
with the twin (`refine`: the most adapters, in the same order, the twin accepts near the
recommended count, one simulated hour per point, the reference client's queue cap, the same rule).

The real runs judge starvation by the published rule alone, so by default the rule here has no
wait limit (`AcceptanceRule(max_wait_s=None)`); its other limits (late requests, adapter loads,
KV and batch use up to the profile's stable_kv_use) stay. `--max-wait 60` adds the default
rule's wait limit.

Then the published method's error of the optimum models against labels derived from the real runs,
and the per-configuration models on every real run: throughput error, starvation macro-F1 and
prediction time per configuration.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.learn.bundle import load_model_set
from loratwin.learn.evaluators import predict, predict_target
from loratwin.learn.features import as_matrix, config_features
from loratwin.learn.zoo import macro_f1, paper_error
from loratwin.plan.judge import AcceptanceRule, make_check
from loratwin.plan.recommend import recommend, refine
from loratwin.plan.recommend.published import published_answer, workload_mix
from loratwin.profiles import load_profile
from loratwin.validate.ml_test import (
    GRID_COUNTS,
    PROFILE,
    cycling_workload,
    grid_point,
    group_name,
    load_groups,
    ok_runs,
)
from loratwin.workload import WorkloadSpec

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["recommend", "published_method", "recommend_refined"]
TITLES = {"recommend": "recommend", "published_method": "published method alone (optimum models)",
          "recommend_refined": "recommend + twin refinement"}
LOOKUP = ("each answer is looked up at the real run with the largest grid served count <= its served count and the "
          "grid max_loras nearest its max_loras (at most that served count; ties: the smaller)")


def real_run_at(rows: list[dict[str, Any]], runs: list[dict[str, Any]], served: int,
                max_loras: int) -> tuple[tuple[int, int] | None, str, dict[str, Any] | None]:
    """The grid point of an answer, the real run's status there and the run when it is ok."""
    point = grid_point(served, max_loras)
    if point is None:
        return None, "below the grid", None
    run = next((r for r in runs if (r["served"], r["max_loras"]) == point), None)
    if run is not None:
        return point, "ok", run
    statuses = [r["status"] for r in rows if (int(r["served_adapters"]), int(r["max_loras"])) == point]
    return point, statuses[0] if statuses else "not run", None


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


def _refined(task: tuple[Any, WorkloadSpec, AcceptanceRule]) -> dict[str, Any]:
    rec, workload, rule = task
    started = time.perf_counter()
    refined = refine(rec, workload, PROFILE, rule=rule, keep_order=True)
    return refined | {"elapsed_s": time.perf_counter() - started}


def evaluate(runs_csv: Path, models_dir: str | None, *, with_twin: bool = True, optimum_model: str | None = None,
             check_kind: str = "auto", max_wait_s: float | None = None, groups_limit: int | None = None,
             workers: int = 1) -> dict[str, Any]:
    profile = load_profile(PROFILE)
    models = load_model_set(models_dir or PROFILE)
    rule = AcceptanceRule(max_wait_s=max_wait_s)
    groups = load_groups(runs_csv)
    if groups_limit is not None:
        groups = dict(list(groups.items())[:groups_limit])
    table, label_rows, recs = [], [], []
    for (rates, ranks), rows in groups.items():
        runs = ok_runs(rows)
        safe = [r for r in runs if not r["starved"]]
        best = max(safe, key=lambda r: r["total_tok_s"]) if safe else None
        workload = cycling_workload(rates, ranks)
        check = make_check(check_kind, profile, workload.lengths, rule=rule, arrival=workload.arrival)
        rec = recommend(workload, profile, check=check, keep_order=True, published=False)
        answer = published_answer(workload, profile, models, optimum_model)
        recs.append((rec, workload))
        table.append({"group": group_name(rates, ranks), "rows": rows, "runs": runs,
                      "best_real": None if best is None else best["total_tok_s"],
                      "best_real_at": None if best is None else [best["served"], best["max_loras"]],
                      "recommend_deciding_limit": rec.deciding_limit,
                      "recommend_predicted_tok_s": rec.predicted_total_tok_s,
                      "answers": {"recommend": (rec.served, rec.max_loras),
                                  "published_method": (answer["served"], answer["max_loras"])}})
        labels = real_labels(runs)
        if labels is not None:
            label_rows.append((labels, (answer["served"], answer["max_loras"], answer["best_total_tok_s"]),
                               (answer["best_served"], answer["best_max_loras"])))
    if with_twin:
        # the twin as the reference client ran: its queue capped at 25,500 waiting requests (TwinCheck's default)
        tasks = [(rec, workload, rule) for rec, workload in recs]
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                refinements = list(pool.map(_refined, tasks))
        else:
            refinements = [_refined(task) for task in tasks]
        for entry, refined in zip(table, refinements):
            entry["answers"]["recommend_refined"] = (refined["served"], refined["max_loras"])
            entry["refine"] = {"holds": refined["holds"], "simulations": refined["simulations"],
                               "elapsed_s": refined["elapsed_s"], "point": refined["point"]}

    names = STRATEGIES[: 3 if with_twin else 2]
    for entry in table:
        rows, runs = entry.pop("rows"), entry.pop("runs")
        for name in names:
            served, slots = entry["answers"][name]
            point, status, run = real_run_at(rows, runs, served, slots)
            entry[name] = {
                "served": served, "max_loras": slots,
                "measured_at": None if point is None else list(point), "status": status,
                "total_tok_s": None if run is None else run["total_tok_s"],
                "starved": None if run is None else run["starved"],
                "regret": None if run is None or entry["best_real"] is None else 1.0 - run["total_tok_s"] / entry["best_real"],
            }
        del entry["answers"]

    summary: dict[str, Any] = {"groups": table, "strategies": names, "lookup": LOOKUP,
                               "rule": {"max_wait_s": rule.max_wait_s, "starvation_threshold": rule.starvation_threshold,
                                        "max_kv_use": rule.kv_use_limit(profile), "window_s": rule.window_s},
                               "check": check_kind}
    for name in names:
        starved = [e["group"] for e in table if e[name]["starved"]]
        unmeasured = {e["group"]: e[name]["status"] for e in table if e[name]["status"] != "ok"}
        regrets = [e[name]["regret"] for e in table if e[name]["regret"] is not None]
        regrets_not_starved = [e[name]["regret"] for e in table if e[name]["regret"] is not None and not e[name]["starved"]]
        summary[name] = {"starved_groups": starved, "unmeasured_groups": unmeasured,
                         "measured_groups": len(regrets),
                         "mean_regret": float(np.mean(regrets)) if regrets else None,
                         "mean_regret_not_starved": float(np.mean(regrets_not_starved)) if regrets_not_starved else None}
    truth = np.array([[lab["served"], lab["max_loras"], lab["total_tok_s"]] for lab, _, _ in label_rows])
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


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def print_report(s: dict[str, Any]) -> None:
    rule = s["rule"]
    wait = "none" if rule["max_wait_s"] is None else f"{rule['max_wait_s']:g} s"
    print(f"recommend: the {s['check']} estimator, keeping the real runs' adapter order; the acceptance rule: "
          f"starvation threshold {rule['starvation_threshold']:g}, wait limit {wait}, KV use limit "
          f"{rule['max_kv_use']:g}, window {rule['window_s']:g} s")
    print(f"published method: models {s['models']}")
    print(f"real runs exist only on the grid ({', '.join(map(str, GRID_COUNTS))}): {LOOKUP}")
    names = s["strategies"]
    header = (["group (rates req/s, ranks)", "best real run not starved (served, max_loras): tok/s"]
              + [f"{TITLES[n]}: (served, max_loras) -> real run at, starved, regret" for n in names])
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for e in s["groups"]:
        best = "-" if e["best_real"] is None else "({}, {}): {:,.0f}".format(*e["best_real_at"], e["best_real"])
        cells = [e["group"], best]
        for name in names:
            r = e[name]
            at = "-" if r["measured_at"] is None else "({}, {})".format(*r["measured_at"])
            starved = r["status"] if r["starved"] is None else ("STARVED" if r["starved"] else "ok")
            cells.append(f"({r['served']}, {r['max_loras']}) -> {at}, {starved}, {_pct(r['regret'])}")
        print("| " + " | ".join(cells) + " |")
    print()
    for name in names:
        r = s[name]
        missing = ""
        if r["unmeasured_groups"]:
            missing = "; no real run there in " + ", ".join(f"{g} ({why})" for g, why in r["unmeasured_groups"].items())
        print(f"{TITLES[name]}: starved in {len(r['starved_groups'])} of {len(s['groups'])} groups {r['starved_groups']}; "
              f"mean regret {_pct(r['mean_regret'])} over {r['measured_groups']} groups measured "
              f"(groups not starved: {_pct(r['mean_regret_not_starved'])}){missing}")
    if "recommend_refined" in names:
        sims = sum(e["refine"]["simulations"] for e in s["groups"])
        seconds = sum(e["refine"]["elapsed_s"] for e in s["groups"])
        refused = [e["group"] for e in s["groups"] if not e["refine"]["holds"]]
        print(f"twin refinement: {sims} simulations of {rule['window_s']:g} s, {seconds:.0f} s in all"
              + (f"; the twin refuses even one adapter in {refused}" if refused else ""))
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
    parser.add_argument("--check", default="auto", help="recommend's estimator: auto, cost-model, learned (default: auto)")
    parser.add_argument("--max-wait", type=float, default=None,
                        help="the rule's wait limit in seconds (default: none, as the real runs' published rule)")
    parser.add_argument("--no-twin", action="store_true", help="skip the twin refinement")
    parser.add_argument("--groups", type=int, default=None, help="only the first N groups (a quick check)")
    parser.add_argument("--workers", type=int, default=1, help="processes refining groups with the twin at once")
    parser.add_argument("--optimum-model", default=None, help="family of the optimum models (default: the profile's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    summary = evaluate(args.runs, args.models, with_twin=not args.no_twin, optimum_model=args.optimum_model,
                       check_kind=args.check, max_wait_s=args.max_wait, groups_limit=args.groups, workers=args.workers)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        print_report(summary)


if __name__ == "__main__":
    main()
