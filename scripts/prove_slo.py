"""Check `recommend --slo ttft_p99:X` against the real vLLM runs it was never fitted on.

    python scripts/prove_slo.py [--runs ../shared/data/real-vllm/runs.csv] [--slo-ms 2000,5000,10000]
        [--groups N] [--workers 1] [--json]

The real runs: the nine Llama `ml_test` groups of runs.csv (loratwin.validate.ml_test: a rate
triple and a rank cycle each, measured at served, max_loras on the grid {16, ..., 384}). For each
group, recommend is given the 384 adapters the group's runs served the first of (rates cycling from
the highest down, beside the rank cycle) and keeps their order, as scripts/prove_recommend.py does,
and is run as the command runs it: the acceptance rule with the SLO (which replaces the wait
limit), the `auto` estimator (the cost model, the twin judging the SLO the cost model does not
predict), `recommend(..., keep_order=True)`.

The answer (S = max_loras, C = served) is looked up as scripts/prove_recommend.py looks up its
answers (loratwin.validate.ml_test.grid_point): at the real run with the largest grid served count
<= C and the grid max_loras nearest S. It fails when that run starved (`starved_approx`), broke
the SLO (its real p99_ttft_ms > X), or is missing or did not run (its status is shown). Its regret is 1 - its throughput / the best real run of the
group that neither starved nor broke the SLO; the mean is over the groups whose run meets both
(the table shows every group's). Targets: no failure in the nine groups; mean regret at most 2%.

The lookup rounds an answer between measured points down to one (117 adapters is scored as the
real run with 96), so part of the regret it shows is the grid's, not the answer's. The second
protocol removes it: the same rule and estimator choose among the measured configurations only
(`grid_answer`: the largest grid served count whose first adapters the rule accepts, at the best
grid max_loras, `make_check(slot_grid=GRID_COUNTS)`), so every answer is a measured run.

For comparison, the default recommendation (no --slo: the default rule, a 60 s wait limit, the
same estimator) is scored against the same SLO.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.plan.judge import AcceptanceRule, make_check
from loratwin.plan.placement.shares import ShareJudge
from loratwin.plan.recommend import recommend
from loratwin.profiles import load_profile
from loratwin.slo import Slo
from loratwin.validate.ml_test import GRID_COUNTS, PROFILE, Group, cycling_workload, grid_point, group_name, load_groups
from loratwin.validate.runs import RealRun, load_runs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = ROOT.parent / "shared" / "data" / "real-vllm" / "runs.csv"
SLO_LIMITS_MS = (2000.0, 5000.0, 10000.0)
MAX_REGRET = 0.02
LOOKUP = ("each answer is looked up at the real run with the largest grid served count <= its served count and the "
          "grid max_loras nearest its max_loras (validate/ml_test.py grid_point)")


def real_groups(runs_csv: Path) -> dict[Group, tuple[list[RealRun], dict[str, float]]]:
    """Per group: its measured runs and each run's real p99 TTFT (ms) by run id."""
    rows = load_groups(runs_csv)
    by_id = {run.run_id: run for run in load_runs(runs_csv)}
    out = {}
    for group, group_rows in rows.items():
        runs = [by_id[r["run_id"]] for r in group_rows if by_id[r["run_id"]].has_metrics]
        p99 = {r["run_id"]: float(r["p99_ttft_ms"]) for r in group_rows if r["p99_ttft_ms"]}
        out[group] = (runs, p99)
    return out


def look_up(runs: list[RealRun], served: int, max_loras: int) -> tuple[tuple[int, int] | None, RealRun | None]:
    """The grid point of an answer (served, max_loras) and the group's measured run there (None: not
    measured, or it did not run)."""
    point = grid_point(served, max_loras)
    run = next((r for r in runs if point == (r.served_adapters, r.max_loras)), None)
    return point, run


def meets(run: RealRun, p99: dict[str, float], limit_ms: float) -> tuple[bool, bool]:
    """(not starved, SLO met) of a real run; a run without a p99 TTFT does not meet the SLO."""
    value = p99.get(run.run_id)
    return (not run.starved, value is not None and value <= limit_ms)


def best_real(runs: list[RealRun], p99: dict[str, float], limit_ms: float) -> RealRun | None:
    """The real run of highest throughput that neither starves nor breaks the SLO (ties: fewer slots, fewer served)."""
    good = [r for r in runs if all(meets(r, p99, limit_ms))]
    return min(good, key=lambda r: (-r.measured["total_tok_s"], r.max_loras, r.served_adapters), default=None)


def score(group: Group, runs: list[RealRun], p99: dict[str, float], answer: tuple[int, int],
          limit_ms: float) -> dict[str, Any]:
    """An answer (max_loras, served) against the real runs of its group under the SLO `limit_ms`."""
    max_loras, served = answer
    point, run = look_up(runs, served, max_loras)
    best = best_real(runs, p99, limit_ms)
    found = None if point is None else [point[1], point[0]]
    if run is None:  # no measurement there: counted as a failure, never as a success
        return {"recommended": [max_loras, served], "found": found, "run_id": None, "p99_ttft_ms": None,
                "starved": True, "slo_met": False, "total_tok_s": 0.0, "measured": False,
                "best": None if best is None else [best.max_loras, best.served_adapters, best.measured["total_tok_s"]],
                "regret": None}
    not_starved, slo_met = meets(run, p99, limit_ms)
    tok_s = run.measured["total_tok_s"]
    return {
        "recommended": [max_loras, served], "found": found, "run_id": run.run_id, "measured": True,
        "p99_ttft_ms": p99.get(run.run_id), "starved": not not_starved, "slo_met": slo_met, "total_tok_s": tok_s,
        "best": None if best is None else [best.max_loras, best.served_adapters, best.measured["total_tok_s"]],
        "regret": None if best is None else 1.0 - tok_s / best.measured["total_tok_s"],
    }


def recommend_answer(task: tuple[Group, float | None]) -> dict[str, Any]:
    """recommend for a group's pool, as the command runs it: with `--slo ttft_p99:X`, or the default rule."""
    (rates, ranks), limit_ms = task
    profile = load_profile(PROFILE)
    workload = cycling_workload(rates, ranks)
    rule = AcceptanceRule() if limit_ms is None else AcceptanceRule(slos=(Slo("ttft_p99", limit_ms),))
    started = time.perf_counter()
    check = make_check("auto", profile, workload.lengths, rule=rule, arrival=workload.arrival)
    rec = recommend(workload, profile, check=check, keep_order=True, published=False)
    return {"answer": (rec.max_loras, rec.served), "deciding": rec.deciding_limit, "check": rec.check,
            "elapsed_s": time.perf_counter() - started}


def grid_answer(task: tuple[Group, float]) -> dict[str, Any]:
    """The rule's answer among the measured configurations only: the largest grid served count
    whose first adapters it accepts, at the best grid max_loras there (the same rule and estimator
    as recommend, `make_check(slot_grid=GRID_COUNTS)`). Every answer is then a measured run, so no
    lookup rounds it; (0, 0) when no grid count is accepted."""
    (rates, ranks), limit_ms = task
    profile = load_profile(PROFILE)
    workload = cycling_workload(rates, ranks)
    rule = AcceptanceRule(slos=(Slo("ttft_p99", limit_ms),))
    started = time.perf_counter()
    check = make_check("auto", profile, workload.lengths, rule=rule, arrival=workload.arrival, slot_grid=GRID_COUNTS)
    judge = ShareJudge(check, profile, list(workload.adapters))
    answer, deciding = (0, 0), "no grid count accepted"
    for count in sorted((c for c in GRID_COUNTS if c <= len(workload.adapters)), reverse=True):
        verdict = judge(list(range(count)))
        if verdict.ok:
            answer, deciding = (verdict.best.max_loras, count), verdict.best.deciding
            break
    return {"answer": answer, "deciding": deciding, "check": check.name, "elapsed_s": time.perf_counter() - started}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of failures, and the regret over the groups whose run meets both (a run that breaks the
    SLO may out-serve the best run that meets it: its negative regret would hide the failure)."""
    failed = [r["group"] for r in rows if r["starved"] or not r["slo_met"]]
    regrets = [r["regret"] for r in rows if r["regret"] is not None and r["group"] not in failed]
    measured = [r for r in rows if r["measured"]]
    return {"groups": len(rows), "starved": sum(r["starved"] for r in measured),
            "slo_broken": sum(not r["slo_met"] for r in measured), "not_measured": len(rows) - len(measured),
            "failed_groups": failed,
            "regret_groups": len(regrets),
            "mean_regret": float(np.mean(regrets)) if regrets else None,
            "median_regret": float(np.median(regrets)) if regrets else None}


def evaluate(runs_csv: Path, limits_ms: tuple[float, ...] = SLO_LIMITS_MS, groups_limit: int | None = None,
             workers: int = 1) -> dict[str, Any]:
    groups = real_groups(runs_csv)
    if groups_limit is not None:
        groups = dict(list(groups.items())[:groups_limit])
    tasks = [(g, x) for x in (None, *limits_ms) for g in groups]
    grid_tasks = [(g, x) for x in limits_ms for g in groups]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            answers = list(pool.map(recommend_answer, tasks))
            grid_answers = list(pool.map(grid_answer, grid_tasks))
    else:
        answers = [recommend_answer(t) for t in tasks]
        grid_answers = [grid_answer(t) for t in grid_tasks]
    by_task = {(g, x): a for (g, x), a in zip(tasks, answers, strict=True)}
    on_grid = {(g, x): a for (g, x), a in zip(grid_tasks, grid_answers, strict=True)}
    out: dict[str, Any] = {"lookup": LOOKUP, "targets": {"failures": 0, "mean_regret_at_most": MAX_REGRET},
                           "limits": []}
    for x in limits_ms:
        tables: dict[str, Any] = {}
        for name, answers_of, key in (("with_slo", by_task, x), ("on_grid", on_grid, x), ("default", by_task, None)):
            rows = []
            for group, (runs, p99) in groups.items():
                answer = answers_of[(group, key)]
                rows.append({"group": group_name(*group), "deciding": answer["deciding"], "check": answer["check"],
                             "elapsed_s": answer["elapsed_s"]} | score(group, runs, p99, answer["answer"], x))
            tables[name] = {"rows": rows, "summary": summarise(rows)}
        out["limits"].append({"slo": f"ttft_p99:{x:g}", "limit_ms": x, **tables})
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def print_report(s: dict[str, Any]) -> None:
    print(f"recommend --slo ttft_p99:X on the 384-adapter pool of each Llama ml_test group (order kept); {s['lookup']}")
    print("targets: no recommended point starves or breaks the SLO in the real run; mean regret <= "
          f"{100 * s['targets']['mean_regret_at_most']:.0f}% against the best real run meeting both\n")
    header = ["group (rates req/s, ranks)", "recommended (S, C)", "real run found (S, C)", "real p99 TTFT ms",
              "starved", "SLO met", "tok/s", "best real (S, C): tok/s", "regret"]
    for entry in s["limits"]:
        for name, title in (("with_slo", f"recommend --slo {entry['slo']}"),
                            ("on_grid", f"the same rule on the measured grid only, --slo {entry['slo']}"),
                            ("default", f"default recommend (no --slo) scored against {entry['slo']}")):
            table = entry[name]
            print(f"### {title}\n")
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
            for r in table["rows"]:
                best = "-" if r["best"] is None else "({}, {}): {:,.0f}".format(*r["best"])
                p99 = "-" if r["p99_ttft_ms"] is None else f"{r['p99_ttft_ms']:,.0f}"
                found = "below the grid" if r["found"] is None else "({}, {})".format(*r["found"])
                starved, met = (("STARVED" if r["starved"] else "no"), ("yes" if r["slo_met"] else "BROKEN")) \
                    if r["measured"] else ("NOT MEASURED", "-")
                print(f"| {r['group']} | ({r['recommended'][0]}, {r['recommended'][1]}) | {found} | {p99} | {starved} | "
                      f"{met} | {r['total_tok_s']:,.0f} | {best} | {_pct(r['regret'])} |")
            m = table["summary"]
            seconds = sum(r["elapsed_s"] for r in table["rows"])
            print(f"\n{title}: starved in {m['starved']} of {m['groups']} groups, SLO broken in {m['slo_broken']}, "
                  f"not measured in {m['not_measured']} "
                  f"({', '.join(m['failed_groups']) or 'none failed'}); mean regret {_pct(m['mean_regret'])} "
                  f"(median {_pct(m['median_regret'])}) over the {m['regret_groups']} groups meeting both; "
                  f"recommend took {seconds:.0f} s in all\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    parser.add_argument("--slo-ms", default=",".join(f"{x:g}" for x in SLO_LIMITS_MS),
                        help="the p99 TTFT limits X in ms, comma-separated (default: 2000,5000,10000)")
    parser.add_argument("--groups", type=int, default=None, help="only the first N groups (a quick check)")
    parser.add_argument("--workers", type=int, default=1, help="processes running recommend at once")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    limits = tuple(float(x) for x in args.slo_ms.split(","))
    summary = evaluate(args.runs, limits, groups_limit=args.groups, workers=args.workers)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        print_report(summary)


if __name__ == "__main__":
    main()
