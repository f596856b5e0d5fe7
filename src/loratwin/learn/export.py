"""Turn fitted scikit-learn, imodels and interpret models into `loratwin-model/1` documents.

Needs the `learn` extra. Every exporter is checked in the tests: the document, evaluated by
`loratwin.learn.evaluators`, predicts what the fitted model predicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from loratwin.learn.evaluators import FORMAT


def _tree_from_sklearn(tree: Any, classification: bool) -> dict[str, list]:
    t = tree.tree_
    values = t.value[:, 0, :]
    if classification:
        # fraction of the positive class at each node
        value = values[:, -1] / np.maximum(values.sum(axis=1), 1e-300) if values.shape[1] > 1 else values[:, 0] * 0.0
    else:
        value = values[:, 0]
    feature = np.where(t.children_left < 0, -1, t.feature)
    return {
        "feature": feature.astype(int).tolist(),
        "threshold": np.where(feature < 0, 0.0, t.threshold).astype(float).tolist(),
        "left": np.where(feature < 0, -1, t.children_left).astype(int).tolist(),
        "right": np.where(feature < 0, -1, t.children_right).astype(int).tolist(),
        "value": value.astype(float).tolist(),
    }


def _tree_from_figs(root: Any, classification: bool) -> dict[str, list]:
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    value: list[float] = []

    def visit(node: Any) -> int:
        index = len(feature)
        leaf = node.left is None or node.right is None
        v = np.asarray(node.value, dtype=np.float64).ravel()
        # a binary FIGS classifier scores both classes; the logit of the positive one is their difference
        score = float(v[-1] - v[0]) if classification and len(v) > 1 else float(v[0])
        # inner nodes of later trees carry no value (NaN): only leaves are ever read
        value.append(score if leaf or np.isfinite(score) else 0.0)
        feature.append(-1 if leaf else int(node.feature))
        threshold.append(0.0 if leaf else float(node.threshold))
        left.append(-1)
        right.append(-1)
        if not leaf:
            left[index] = visit(node.left)
            right[index] = visit(node.right)
        return index

    visit(root)
    return {"feature": feature, "threshold": threshold, "left": left, "right": right, "value": value}


def _document(kind: str, task: str, target: str, features: Sequence[str], body: dict, link: str = "identity") -> dict:
    return {
        "format": FORMAT,
        "kind": kind,
        "task": task,
        "target": target,
        "features": list(features),
        "link": link,
        "body": body,
    }


def export_model(estimator: Any, family: str, task: str, target: str, features: Sequence[str]) -> dict[str, Any]:
    """A document for a fitted estimator of one of the zoo's families."""
    classification = task == "classification"
    if family == "tree":
        return _document("tree", task, target, features, _tree_from_sklearn(estimator, classification))
    if family == "figs":
        trees = [_tree_from_figs(root, classification) for root in estimator.trees_]
        link = "logistic" if classification else "identity"
        return _document("tree_sum", task, target, features, {"init": 0.0, "scale": 1.0, "trees": trees}, link)
    if family == "gbm":
        trees = [_tree_from_sklearn(t, False) for t in estimator.estimators_[:, 0]]
        init = float(np.ravel(estimator._raw_predict_init(np.zeros((1, len(features)))))[0])
        body = {"init": init, "scale": float(estimator.learning_rate), "trees": trees}
        return _document("tree_sum", task, target, features, body, "logistic" if classification else "identity")
    if family == "forest":
        trees = [_tree_from_sklearn(t, classification) for t in estimator.estimators_]
        body = {"init": 0.0, "scale": 1.0 / len(trees), "trees": trees}
        return _document("tree_sum", task, target, features, body)
    if family == "rulefit":
        return _document("rules", task, target, features, _rulefit_body(estimator, classification),
                         "logistic" if classification else "identity")
    if family == "linear":
        return _document("linear", task, target, features, _linear_body(estimator),
                         "logistic" if classification else "identity")
    if family == "ebm":
        return _document("additive", task, target, features, _ebm_body(estimator),
                         "logistic" if classification else "identity")
    raise ValueError(f"no exporter for model family {family!r}")


def _rulefit_body(model: Any, classification: bool) -> dict[str, Any]:
    n_features = model.n_features_
    coef = np.asarray(model.coef, dtype=np.float64)
    linear = []
    if model.include_linear:
        low, high = model.winsorizer.winsor_lims
        multipliers = model.friedscale.scale_multipliers if model.lin_standardise else np.ones(n_features)
        for i in range(n_features):
            c = float(coef[i] * multipliers[i])
            if c != 0.0:
                linear.append({"feature": i, "low": float(low[i]), "high": float(high[i]), "coef": c})
    rules = []
    for rule in model.rules_without_feature_names_:
        c = float(rule.args[0])
        if c == 0.0:
            continue
        conditions = []
        for (placeholder, op), value in rule.agg_dict.items():
            if op not in ("<=", ">"):
                raise ValueError(f"RuleFit rule with operator {op!r} cannot be exported")
            conditions.append([int(placeholder.removeprefix("X_")), op, float(value)])
        rules.append({"conditions": conditions, "coef": c})
    intercept = float(np.ravel(model.intercept)[0]) if np.ndim(model.intercept) else float(model.intercept)
    if classification:
        # imodels turns the score c into softmax(1 - c, c): the logit is 2c - 1
        linear = [t | {"coef": 2 * t["coef"]} for t in linear]
        rules = [r | {"coef": 2 * r["coef"]} for r in rules]
        intercept = 2 * intercept - 1
    return {"intercept": intercept, "linear": linear, "rules": rules}


def _linear_body(pipeline: Any) -> dict[str, Any]:
    scaler, model = pipeline[0], pipeline[-1]
    coef = np.ravel(model.coef_) / scaler.scale_
    intercept = float(np.ravel(model.intercept_)[0] - (coef * scaler.mean_).sum())
    return {"intercept": intercept, "coef": coef.astype(float).tolist()}


def _ebm_body(model: Any) -> dict[str, Any]:
    terms = []
    for features, scores in zip(model.term_features_, model.term_scores_, strict=True):
        level = len(features) - 1
        cuts = []
        for f in features:
            bins = model.bins_[f]
            levels = bins[min(level, len(bins) - 1)]
            if isinstance(levels, dict):
                raise TypeError("categorical EBM features cannot be exported")
            cuts.append(np.asarray(levels, dtype=np.float64).tolist())
        terms.append({"features": [int(f) for f in features], "cuts": cuts, "scores": np.asarray(scores).tolist()})
    return {"intercept": float(np.ravel(model.intercept_)[0]), "terms": terms}
