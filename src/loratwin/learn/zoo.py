"""The model zoo: interpretable families and accuracy references, cross-validated by workload.

Needs the `learn` extra (scikit-learn, imodels, interpret). Families:

- tree: a decision tree of depth <= 6 (the published method's kind);
- figs: FIGS, a small sum of trees (imodels);
- rulefit: RuleFit, a sparse linear model on rules and clipped features (imodels);
- ebm: an explainable boosting machine, one shape function per feature plus a few pairs (interpret);
- linear: ridge regression / logistic regression on standardised features;
- forest, gbm: random forest and gradient boosting, the accuracy references.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loratwin.learn.evaluators import predict as evaluate
from loratwin.learn.export import export_model

FAMILIES = ("tree", "figs", "rulefit", "ebm", "linear", "forest", "gbm")
INTERPRETABLE = ("tree", "figs", "rulefit", "ebm", "linear")
TREE_MAX_DEPTH = 6


def paper_error(y: np.ndarray, p: np.ndarray) -> float:
    """The published method's error in %: 100 * mean(|y - p| / (|y| + |p|)) (0 where both are 0)."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    denominator = np.abs(y) + np.abs(p)
    terms = np.where(denominator > 0, np.abs(y - p) / np.where(denominator > 0, denominator, 1.0), 0.0)
    return float(100.0 * terms.mean()) if len(terms) else float("nan")


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """Mean of the F1 scores of both classes (a class absent from both counts as 1)."""
    y, p = np.asarray(y).astype(bool), np.asarray(p).astype(bool)
    scores = []
    for cls in (True, False):
        tp = np.sum((y == cls) & (p == cls))
        fp = np.sum((y != cls) & (p == cls))
        fn = np.sum((y == cls) & (p != cls))
        scores.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def make_estimator(family: str, task: str, seed: int = 0) -> Any:
    classification = task == "classification"
    if family == "tree":
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        cls = DecisionTreeClassifier if classification else DecisionTreeRegressor
        return cls(max_depth=TREE_MAX_DEPTH, min_samples_leaf=3, random_state=seed)
    if family == "figs":
        from imodels import FIGSClassifier, FIGSRegressor

        cls = FIGSClassifier if classification else FIGSRegressor
        return cls(max_rules=24, max_trees=4, max_depth=TREE_MAX_DEPTH, random_state=seed)
    if family == "rulefit":
        from imodels import RuleFitClassifier, RuleFitRegressor

        cls = RuleFitClassifier if classification else RuleFitRegressor
        return cls(max_rules=40, n_estimators=60, tree_size=4, random_state=seed)
    if family == "ebm":
        from interpret.glassbox import ExplainableBoostingClassifier, ExplainableBoostingRegressor

        cls = ExplainableBoostingClassifier if classification else ExplainableBoostingRegressor
        return cls(max_bins=64, max_interaction_bins=16, interactions=3, outer_bags=2, max_rounds=2000, n_jobs=1,
                   random_state=seed)
    if family == "linear":
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = LogisticRegression(C=10.0, max_iter=2000) if classification else Ridge(alpha=1.0)
        return make_pipeline(StandardScaler(), model)
    if family == "forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(n_estimators=100, min_samples_leaf=2, n_jobs=1, random_state=seed)
    if family == "gbm":
        from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

        cls = GradientBoostingClassifier if classification else GradientBoostingRegressor
        return cls(n_estimators=300, max_depth=4, learning_rate=0.05, subsample=0.8, random_state=seed)
    raise ValueError(f"unknown model family {family!r} (known: {', '.join(FAMILIES)})")


def fit(family: str, task: str, X: np.ndarray, y: np.ndarray, seed: int = 0) -> Any:
    estimator = make_estimator(family, task, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "classification" and len(np.unique(y)) < 2:
            return _Constant(float(y[0]) if len(y) else 0.0)
        estimator.fit(X, y.astype(int) if task == "classification" else y)
    return estimator


@dataclass
class _Constant:
    """Stands in for a classifier when a training fold holds one class only."""

    value: float


def to_document(estimator: Any, family: str, task: str, target: str, features: list[str]) -> dict[str, Any]:
    if isinstance(estimator, _Constant):
        tree = {"feature": [-1], "threshold": [0.0], "left": [-1], "right": [-1], "value": [estimator.value]}
        return {"format": "loratwin-model/1", "kind": "tree", "task": task, "target": target,
                "features": list(features), "link": "identity", "body": tree}
    return export_model(estimator, family, task, target, features)


@dataclass
class Target:
    """What a model learns. `transform` maps the model's output to the target (e.g. ratio x offered)."""

    name: str
    task: str  # regression | classification
    column: str  # the table's target the model is fitted on
    transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # (X, model output) -> target
    snap: Callable[[np.ndarray], np.ndarray] | None = None  # rounding to allowed values, for reporting


@dataclass
class CVResult:
    family: str
    target: str
    error_pct: float | None = None  # regression
    macro_f1: float | None = None  # classification
    predict_ms_per_sample: float = float("nan")
    fit_s: float = 0.0
    size: int = 0  # nodes, rules, terms or coefficients
    out_of_fold: np.ndarray = field(default_factory=lambda: np.zeros(0))


def model_size(document: dict[str, Any]) -> int:
    kind, body = document["kind"], document["body"]
    if kind == "tree":
        return sum(1 for f in body["feature"] if f < 0)
    if kind == "tree_sum":
        return sum(sum(1 for f in t["feature"] if f < 0) for t in body["trees"])
    if kind == "rules":
        return len(body["rules"]) + len(body["linear"])
    if kind == "linear":
        return int(sum(1 for c in body["coef"] if c != 0))
    return len(body["terms"])


def group_folds(groups: np.ndarray, n_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Test indices of each fold: whole workloads, shuffled deterministically."""
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {g: i % n_folds for i, g in zip(range(len(unique)), unique[order])}
    assignment = np.array([fold_of[g] for g in groups])
    return [np.flatnonzero(assignment == k) for k in range(n_folds)]


def cross_validate(
    family: str, target: Target, X: np.ndarray, y: np.ndarray, groups: np.ndarray, features: list[str], n_folds: int = 5
) -> CVResult:
    """Grouped k-fold: every workload is predicted by a model that never saw it. Predictions go
    through the exported document, so the figures are those of the shipped evaluator."""
    out = np.zeros(len(y))
    fit_s, predict_s = 0.0, 0.0
    for test in group_folds(groups, n_folds):
        train = np.setdiff1d(np.arange(len(y)), test)
        started = time.perf_counter()
        estimator = fit(family, target.task, X[train], y[train])
        fit_s += time.perf_counter() - started
        document = to_document(estimator, family, target.task, target.name, features)
        started = time.perf_counter()
        out[test] = evaluate(document, X[test])
        predict_s += time.perf_counter() - started
    result = CVResult(family, target.name, fit_s=fit_s, predict_ms_per_sample=1000 * predict_s / max(1, len(y)))
    result.out_of_fold = out
    return result


def comparison_markdown(title: str, rows: list[dict[str, Any]]) -> str:
    """A Markdown table of CV results: one row per (target, family)."""
    snapped = any(r.get("error_pct_snapped") is not None for r in rows)
    classification = any(r.get("macro_f1") is not None for r in rows)
    header = ["target", "model", "CV error %"] + (["snapped to grid %"] if snapped else [])
    header += (["macro-F1"] if classification else []) + ["predict ms/sample", "size", "fit s (5 folds)"]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["target"], r["family"], "" if r.get("error_pct") is None else f"{r['error_pct']:.2f}"]
        if snapped:
            cells.append("" if r.get("error_pct_snapped") is None else f"{r['error_pct_snapped']:.2f}")
        if classification:
            cells.append("" if r.get("macro_f1") is None else f"{r['macro_f1']:.3f}")
        cells += [f"{r['predict_ms_per_sample']:.4f}", str(r["size"]), f"{r['fit_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
