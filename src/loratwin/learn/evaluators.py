"""Evaluate models stored as JSON with numpy alone: no scikit-learn, no pickle.

A stored model is a plain document:

    {"format": "loratwin-model/1", "kind": ..., "task": "regression" | "classification",
     "target": ..., "features": [names], "link": "identity" | "logistic", "output": ..., "body": {...}}

Kinds and their bodies (a split sends x[feature] <= threshold to the left, as scikit-learn does):

- "tree": one binary tree as parallel arrays: feature (-1 at a leaf), threshold, left, right, value;
- "tree_sum": {"init", "scale", "trees": [tree, ...]}: init + scale * sum of the trees (FIGS, boosting,
  a forest with scale 1/n);
- "rules": {"intercept", "linear": [{"feature", "low", "high", "coef"}], "rules": [{"conditions":
  [[feature, "<=" | ">", threshold], ...], "coef"}]} (RuleFit: clipped linear terms plus rules);
- "linear": {"intercept", "coef"};
- "additive": {"intercept", "terms": [{"features": [i] or [i, j], "cuts": [[...], ...], "scores": nested
  lists}]} (an explainable boosting machine: per term, a score per bin; bin 0 is "missing", values
  below the first cut fall in bin 1, and a value equal to a cut goes up).

The raw score goes through the link: "logistic" turns it into the probability of the positive class.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "loratwin-model/1"
KINDS = ("tree", "tree_sum", "rules", "linear", "additive")


class ModelFormatError(ValueError):
    """A model document that this evaluator cannot read."""


def _tree_arrays(tree: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    feature = np.asarray(tree["feature"], dtype=np.int64)
    threshold = np.asarray(tree["threshold"], dtype=np.float64)
    left = np.asarray(tree["left"], dtype=np.int64)
    right = np.asarray(tree["right"], dtype=np.int64)
    value = np.asarray(tree["value"], dtype=np.float64)
    n = len(feature)
    if not (len(threshold) == len(left) == len(right) == len(value) == n) or n == 0:
        raise ModelFormatError("a tree needs equally long, non-empty feature/threshold/left/right/value arrays")
    return feature, threshold, left, right, value


def tree_depth(tree: Mapping[str, Any]) -> int:
    feature, _, left, right, _ = _tree_arrays(tree)
    depth, frontier = 0, [0]
    while True:
        children = [c for node in frontier if feature[node] >= 0 for c in (left[node], right[node])]
        if not children:
            return depth
        depth, frontier = depth + 1, children


def tree_leaves(tree: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    """The leaf each row of X ends in."""
    feature, threshold, left, right, _ = _tree_arrays(tree)
    node = np.zeros(len(X), dtype=np.int64)
    rows = np.arange(len(X))
    for _ in range(len(feature)):
        f = feature[node]
        inner = f >= 0
        if not inner.any():
            break
        go_left = X[rows, np.where(inner, f, 0)] <= threshold[node]
        node = np.where(inner, np.where(go_left, left[node], right[node]), node)
    return node


def tree_values(tree: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    return np.asarray(tree["value"], dtype=np.float64)[tree_leaves(tree, X)]


def _rules_score(body: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    score = np.full(len(X), float(body["intercept"]))
    for term in body.get("linear", []):
        column = np.clip(X[:, int(term["feature"])], float(term["low"]), float(term["high"]))
        score += float(term["coef"]) * column
    for rule in body.get("rules", []):
        holds = np.ones(len(X), dtype=bool)
        for feature, op, threshold in rule["conditions"]:
            column = X[:, int(feature)]
            if op == "<=":
                holds &= column <= float(threshold)
            elif op == ">":
                holds &= column > float(threshold)
            else:
                raise ModelFormatError(f"unknown rule operator {op!r}")
        score += float(rule["coef"]) * holds
    return score


def _bin_index(cuts: Sequence[float], column: np.ndarray) -> np.ndarray:
    index = np.searchsorted(np.asarray(cuts, dtype=np.float64), column, side="right") + 1
    return np.where(np.isnan(column), 0, index)


def _additive_score(body: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    score = np.full(len(X), float(body["intercept"]))
    for term in body["terms"]:
        scores = np.asarray(term["scores"], dtype=np.float64)
        index = tuple(_bin_index(cuts, X[:, int(f)]) for f, cuts in zip(term["features"], term["cuts"], strict=True))
        score += scores[index]
    return score


def raw_score(model: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    kind, body = model["kind"], model["body"]
    if kind == "tree":
        return tree_values(body, X)
    if kind == "tree_sum":
        total = np.zeros(len(X))
        for tree in body["trees"]:
            total += tree_values(tree, X)
        return float(body.get("init", 0.0)) + float(body.get("scale", 1.0)) * total
    if kind == "rules":
        return _rules_score(body, X)
    if kind == "linear":
        return float(body["intercept"]) + X @ np.asarray(body["coef"], dtype=np.float64)
    if kind == "additive":
        return _additive_score(body, X)
    raise ModelFormatError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")


def _leaf_value_one(tree: Mapping[str, Any], x: list[float]) -> float:
    feature, threshold, left, right = tree["feature"], tree["threshold"], tree["left"], tree["right"]
    node = 0
    while feature[node] >= 0:
        node = left[node] if x[feature[node]] <= threshold[node] else right[node]
    return float(tree["value"][node])


def _bin_one(cuts: Sequence[float], value: float) -> int:
    return 0 if math.isnan(value) else bisect.bisect_right(cuts, value) + 1


def _holds_one(x: list[float], condition: Sequence[Any]) -> bool:
    feature, op, threshold = condition
    if op == "<=":
        return x[int(feature)] <= float(threshold)
    if op == ">":
        return x[int(feature)] > float(threshold)
    raise ModelFormatError(f"unknown rule operator {op!r}")


def _score_one(model: Mapping[str, Any], x: list[float]) -> float:
    """raw_score for a single input in plain Python: numpy's per-call overhead would dominate."""
    kind, body = model["kind"], model["body"]
    if kind == "tree":
        return _leaf_value_one(body, x)
    if kind == "tree_sum":
        total = sum(_leaf_value_one(tree, x) for tree in body["trees"])
        return float(body.get("init", 0.0)) + float(body.get("scale", 1.0)) * total
    if kind == "rules":
        score = float(body["intercept"])
        for term in body.get("linear", []):
            score += float(term["coef"]) * min(max(x[int(term["feature"])], float(term["low"])), float(term["high"]))
        for rule in body.get("rules", []):
            if all(_holds_one(x, condition) for condition in rule["conditions"]):
                score += float(rule["coef"])
        return score
    if kind == "linear":
        return float(body["intercept"]) + sum(c * v for c, v in zip(body["coef"], x, strict=True))
    if kind == "additive":
        score = float(body["intercept"])
        for term in body["terms"]:
            cell: Any = term["scores"]
            for f, cuts in zip(term["features"], term["cuts"], strict=True):
                cell = cell[_bin_one(cuts, x[int(f)])]
            score += float(cell)
        return score
    raise ModelFormatError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")


def predict(model: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    """Regression: the prediction. Classification: the probability of the positive class."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    if X.shape[1] != len(model["features"]):
        raise ModelFormatError(f"expected {len(model['features'])} features, got {X.shape[1]}")
    if len(X) == 1:
        score = np.array([_score_one(model, X[0].tolist())])
    else:
        score = raw_score(model, X)
    if model.get("link", "identity") == "logistic":
        return 1.0 / (1.0 + np.exp(-np.clip(score, -500, 500)))
    return score


def check_model(model: Any, source: str = "model") -> dict[str, Any]:
    if not isinstance(model, dict) or model.get("format") != FORMAT:
        raise ModelFormatError(f"{source}: not a {FORMAT} document")
    for key in ("kind", "task", "target", "features", "body"):
        if key not in model:
            raise ModelFormatError(f"{source}: missing {key!r}")
    if model["kind"] not in KINDS:
        raise ModelFormatError(f"{source}: unknown model kind {model['kind']!r} (known: {', '.join(KINDS)})")
    return model


def load_model(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return check_model(json.loads(path.read_text(encoding="utf-8")), str(path))


def save_model(model: Mapping[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model, indent=None, separators=(",", ":"), allow_nan=False) + "\n", encoding="utf-8")


def predict_target(model: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    """The model's answer in the target's units. A model fitted on a ratio (`output.multiply_by`:
    throughput / offered load, the offered load capped at `output.at_most`) is multiplied back."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    out = predict(model, X)
    output = model.get("output", {})
    if output.get("multiply_by"):
        scale = X[:, list(model["features"]).index(output["multiply_by"])]
        if output.get("at_most") is not None:
            scale = np.minimum(scale, float(output["at_most"]))
        out = out * scale
    return out
