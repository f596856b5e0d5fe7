"""Train every model of one profile from a sweep and write them as JSON, with a comparison table.

Needs the `learn` extra. Output directory (the package ships one per built-in profile under
`loratwin/learn/models/<profile>/`):

    manifest.json          profile, training data, SLOs of the optimum labels, default model per target, CV figures
    <target>.<family>.json one document per shipped model (see loratwin.learn.evaluators)
    comparison.md          grouped cross-validation of every family, as Markdown
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.errors import InputError
from loratwin.learn.dataset import POOL_ADAPTERS, STARVATION_THRESHOLD, Table, config_table, load_sweep, optimum_table
from loratwin.learn.evaluators import predict_target, save_model
from loratwin.learn.zoo import (
    FAMILIES,
    INTERPRETABLE,
    Target,
    comparison_markdown,
    cross_validate,
    fit,
    macro_f1,
    model_size,
    paper_error,
    to_document,
)
from loratwin.slo import Slo
from loratwin.validate.ml_test import GRID_COUNTS as ML_TEST_GRID

MANIFEST_FORMAT = "loratwin-models/1"
# Shipped with the package: the interpretable families (the references take 0.3-0.4 MB each).
SHIPPED_FAMILIES = ("tree", "figs", "rulefit", "ebm", "linear")
GRID_COUNTS = list(ML_TEST_GRID)

# what train_profile (and tune) put in a models folder
MODEL_FILES = ("*.json", "comparison.md")


def snap_to(values: Sequence[int]) -> Callable[[np.ndarray], np.ndarray]:
    allowed = np.asarray(sorted(values), dtype=np.float64)

    def snap(p: np.ndarray) -> np.ndarray:
        return allowed[np.abs(np.asarray(p)[:, None] - allowed[None, :]).argmin(axis=1)]

    return snap


def _targets() -> list[tuple[str, Target, str | None]]:
    """(table, target, output multiplier feature)."""
    grid = snap_to(GRID_COUNTS)
    return [
        ("optimum", Target("best_served", "regression", "best_served", snap=grid), None),
        ("optimum", Target("best_max_loras", "regression", "best_max_loras", snap=grid), None),
        ("optimum", Target("best_total_tok_s", "regression", "best_total_tok_s"), None),
        ("config", Target("total_tok_s", "regression", "throughput_ratio"), "offered_tok_s"),
        ("config", Target("starved", "classification", "starved"), None),
    ]


def _score(target: Target, table: Table, out: np.ndarray, multiply_by: str | None) -> dict[str, Any]:
    if target.task == "classification":
        return {"macro_f1": macro_f1(table.targets[target.column] > 0.5, out >= 0.5)}
    if multiply_by:
        out = out * np.minimum(table.X[:, table.features.index(multiply_by)], table.capacity_tok_s)
        truth = table.targets[target.name]
    else:
        truth = table.targets[target.column]
    scores = {"error_pct": paper_error(truth, out)}
    if target.snap is not None:
        scores["error_pct_snapped"] = paper_error(truth, target.snap(out))
    return scores


def train_profile(
    results_dir: str | Path,
    out_dir: str | Path,
    *,
    profile: str | None = None,
    families: Sequence[str] = FAMILIES,
    ship: Sequence[str] = SHIPPED_FAMILIES,
    n_folds: int = 5,
    threshold: float = STARVATION_THRESHOLD,
    log: Callable[[str], None] = lambda message: None,
    about: dict[str, Any] | None = None,
    slos: tuple[Slo, ...] = (),
) -> dict[str, Any]:
    """Cross-validate every family on every target, fit each on all data, write the shipped ones.
    `about`: what else to say of the training data in the manifest (e.g. the sweep that made it).
    `slos`: the optimum models learn the best point that neither starves nor breaks these SLOs on
    the twin's metrics (the per-configuration models, throughput and starvation, do not depend on
    them); the manifest and each optimum model record them as `slos` (empty: starvation alone)."""
    started = time.monotonic()
    prof, runs, labels = load_sweep(results_dir, profile, threshold, slos)
    tables = {"config": config_table(runs, prof, threshold), "optimum": optimum_table(labels, prof)}
    if len(tables["optimum"]) < n_folds or len(tables["config"]) < n_folds:
        raise InputError(f"{results_dir}: too few workloads with a known optimum to cross-validate ({len(tables['optimum'])})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.json"):
        stale.unlink()

    slo_texts = [slo.text for slo in slos]
    comparison: dict[str, list[dict[str, Any]]] = {"optimum": [], "config": []}
    models: dict[str, dict[str, Any]] = {}
    for table_name, target, multiply_by in _targets():
        table = tables[table_name]
        y = table.targets[target.column]
        for family in families:
            log(f"{prof.name}: {target.name} / {family}: cross-validating on {len(table)} rows")
            cv = cross_validate(family, target, table.X, y, table.groups, table.features, n_folds)
            scores = _score(target, table, cv.out_of_fold, multiply_by)
            estimator = fit(family, target.task, table.X, y)
            document = to_document(estimator, family, target.task, target.name, table.features)
            if multiply_by:
                document["output"] = {"multiply_by": multiply_by, "at_most": table.capacity_tok_s,
                                      "fitted_on": "total_tok_s / min(offered_tok_s, at_most)"}
            if target.snap is not None:
                document["output"] = {"snap_to": GRID_COUNTS}
            row = {
                "target": target.name, "family": family, "error_pct": scores.get("error_pct"),
                "error_pct_snapped": scores.get("error_pct_snapped"), "macro_f1": scores.get("macro_f1"),
                "predict_ms_per_sample": _timed_predict_ms(document, table.X), "size": model_size(document),
                "fit_s": cv.fit_s, "rows": len(table), "workloads": len(np.unique(table.groups)),
            }
            comparison[table_name].append(row)
            document["family"] = family
            document["profile"] = prof.name
            document["cv"] = {k: v for k, v in row.items() if k not in ("target", "family")}
            if table_name == "optimum":
                document["slos"] = slo_texts
            if family in ship:
                name = f"{target.name}.{family}"
                save_model(document, out_dir / f"{name}.json")
                models[name] = {"file": f"{name}.json", "target": target.name, "family": family, "table": table_name}

    defaults = choose_defaults(comparison)
    manifest = {
        "format": MANIFEST_FORMAT,
        "profile": prof.name,
        "starvation_threshold": threshold,
        "slos": slo_texts,  # the optimum labels' SLOs (KEY:MS on the twin's metrics); empty: starvation alone
        "pool_adapters": POOL_ADAPTERS,
        "grid_counts": GRID_COUNTS,
        "training": {
            "runs": len(tables["config"]),
            "workloads": len(np.unique(tables["config"].groups)),
            "workloads_with_optimum": len(tables["optimum"]),
            "cv_folds": n_folds,
            "cv_grouped_by": "workload",
            **(about or {}),
        },
        "defaults": defaults,
        "models": models,
        "comparison": comparison,
        "train_s": round(time.monotonic() - started, 1),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    write_comparison(manifest, out_dir)
    return manifest


def choose_defaults(comparison: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Per target, the interpretable family with the best cross-validated figure: macro-F1 for
    starvation; for served and max_loras the error once rounded to the grid, as recommend uses them."""
    defaults = {}
    for table_name, target, _ in _targets():
        rows = [r for r in comparison[table_name] if r["target"] == target.name and r["family"] in INTERPRETABLE]
        if target.task == "classification":
            best = max(rows, key=lambda r: r["macro_f1"])
        else:
            best = min(rows, key=lambda r: r["error_pct_snapped"] if r.get("error_pct_snapped") is not None else r["error_pct"])
        defaults[target.name] = best["family"]
    return defaults


def write_comparison(manifest: dict[str, Any], out_dir: str | Path) -> None:
    """comparison.md: the cross-validation figures of every family, from the manifest."""
    comparison, training = manifest["comparison"], manifest["training"]
    slos = manifest.get("slos") or []
    under = f" under the SLOs {', '.join(slos)} (twin metrics)" if slos else ""
    markdown = (
        f"## {manifest['profile']}: grouped {training['cv_folds']}-fold cross-validation by workload\n\n"
        f"Training data: {training['runs']} twin runs of {training['workloads']} workloads "
        f"({training['workloads_with_optimum']} with a known optimum{under}). "
        "Error: `100 * mean(|y - p| / (|y| + |p|))`; "
        "starvation: macro-F1; prediction time with the JSON evaluators, per sample in a batch; "
        "size: leaves, rules or terms. forest and gbm are accuracy references and are not shipped.\n\n"
        + comparison_markdown(f"Optimum models ({training['workloads_with_optimum']} workloads)", comparison["optimum"])
        + "\n"
        + comparison_markdown(f"Per-configuration models ({training['runs']} runs)", comparison["config"])
    )
    (Path(out_dir) / "comparison.md").write_text(markdown, encoding="utf-8")


def _timed_predict_ms(document: dict[str, Any], X: np.ndarray, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predict_target(document, X)
        best = min(best, time.perf_counter() - started)
    return 1000 * best / max(1, len(X))
