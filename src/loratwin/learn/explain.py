"""Models as text a person can read: whole models (`loratwin explain`) and the path one input takes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from loratwin.learn.evaluators import tree_leaves, tree_values

MAX_RULES_SHOWN = 25


def _num(value: float) -> str:
    return f"{value:.4g}"


def _value_text(model: Mapping[str, Any], value: float) -> str:
    if model["task"] == "classification":
        if model.get("link") == "logistic":
            return f"score {value:+.3g}"
        return f"P(starved) = {value:.2f}"
    output = model.get("output", {})
    if output.get("multiply_by"):
        scale = output["multiply_by"] if output.get("at_most") is None else f"min({output['multiply_by']}, {output['at_most']:.0f})"
        return f"{model['target']} = {_num(value)} x {scale}"
    return f"{model['target']} = {_num(value)}"


def _tree_lines(model: Mapping[str, Any], tree: Mapping[str, Any], indent: str = "") -> list[str]:
    features = model["features"]
    lines: list[str] = []

    def visit(node: int, depth: int) -> None:
        pad = indent + "    " * depth
        f = tree["feature"][node]
        if f < 0:
            lines.append(f"{pad}-> {_value_text(model, tree['value'][node])}")
            return
        name, threshold = features[f], _num(tree["threshold"][node])
        lines.append(f"{pad}if {name} <= {threshold}:")
        visit(tree["left"][node], depth + 1)
        lines.append(f"{pad}else ({name} > {threshold}):")
        visit(tree["right"][node], depth + 1)

    visit(0, 0)
    return lines


def _link_note(model: Mapping[str, Any]) -> list[str]:
    notes = []
    if model.get("link") == "logistic":
        notes.append("P(starved) = 1 / (1 + exp(-score)); starved when P >= 0.5")
    elif model["task"] == "classification":
        notes.append("starved when P(starved) >= 0.5")
    output = model.get("output", {})
    if output.get("multiply_by"):
        scale = output["multiply_by"] if output.get("at_most") is None else f"min({output['multiply_by']}, {output['at_most']:.0f})"
        notes.append(f"the model predicts {model['target']} / {scale}: the answer is that times {scale}")
    if model.get("output", {}).get("snap_to"):
        notes.append("the answer is rounded to the nearest of " + ", ".join(str(v) for v in model["output"]["snap_to"]))
    return notes


def _condition_text(features: list[str], condition: list[Any]) -> str:
    f, op, threshold = condition
    return f"{features[int(f)]} {op} {_num(float(threshold))}"


def describe_model(model: Mapping[str, Any]) -> str:
    """The whole model as readable rules."""
    kind, body, features = model["kind"], model["body"], list(model["features"])
    head = f"{model.get('family', kind)} model of {model['target']} ({model['task']}, profile {model.get('profile', '?')})"
    cv = model.get("cv") or {}
    if cv.get("error_pct") is not None:
        head += f"; cross-validated error {cv['error_pct']:.2f}%"
    if cv.get("macro_f1") is not None:
        head += f"; cross-validated macro-F1 {cv['macro_f1']:.3f}"
    lines = [head] + [f"  ({note})" for note in _link_note(model)]
    if kind == "tree":
        lines += _tree_lines(model, body)
    elif kind == "tree_sum":
        lines.append(f"sum of {len(body['trees'])} trees" + (f" + {_num(body['init'])}" if body.get("init") else "")
                     + (f", times {_num(body['scale'])}" if body.get("scale", 1.0) != 1.0 else ""))
        for i, tree in enumerate(body["trees"][:MAX_RULES_SHOWN]):
            lines.append(f"tree {i + 1}:")
            lines += _tree_lines({**model, "task": "regression", "target": "adds", "output": {}}, tree, "  ")
        if len(body["trees"]) > MAX_RULES_SHOWN:
            lines.append(f"... and {len(body['trees']) - MAX_RULES_SHOWN} more trees")
    elif kind == "rules":
        lines.append(f"start from {_num(body['intercept'])}")
        for term in body["linear"]:
            lines.append(
                f"  {float(term['coef']):+.4g} x {features[term['feature']]}"
                f"  (clipped to [{_num(term['low'])}, {_num(term['high'])}])"
            )
        rules = sorted(body["rules"], key=lambda r: -abs(r["coef"]))
        for rule in rules[:MAX_RULES_SHOWN]:
            conditions = " and ".join(_condition_text(features, c) for c in rule["conditions"])
            lines.append(f"  {float(rule['coef']):+.4g} if {conditions}")
        if len(rules) > MAX_RULES_SHOWN:
            lines.append(f"  ... and {len(rules) - MAX_RULES_SHOWN} smaller rules")
    elif kind == "linear":
        lines.append(f"start from {_num(body['intercept'])}")
        for name, coef in zip(features, body["coef"], strict=True):
            if coef != 0:
                lines.append(f"  {coef:+.4g} x {name}")
    elif kind == "additive":
        lines.append(f"start from {_num(body['intercept'])}, add one score per term (shape functions):")
        ranked = sorted(body["terms"], key=lambda t: -float(np.ptp(np.asarray(t["scores"], dtype=float))))
        for term in ranked[:MAX_RULES_SHOWN]:
            names = " x ".join(features[f] for f in term["features"])
            scores = np.asarray(term["scores"], dtype=float)
            if len(term["features"]) == 1:
                lines.append(f"  {names}: " + _shape_text(term["cuts"][0], scores))
            else:
                lines.append(f"  {names}: pair term, scores from {_num(scores.min())} to {_num(scores.max())}")
    return "\n".join(lines)


def _shape_text(cuts: list[float], scores: np.ndarray, pieces: int = 6) -> str:
    """A one-feature shape function as a few ranges with their mean score."""
    values = scores[1 : len(cuts) + 2]  # without the missing and unknown bins
    edges = [-np.inf] + list(cuts) + [np.inf]
    step = max(1, int(np.ceil(len(values) / pieces)))
    parts = []
    for start in range(0, len(values), step):
        stop = min(len(values), start + step)
        low, high = edges[start], edges[stop]
        where = f"< {_num(high)}" if low == -np.inf else (f">= {_num(low)}" if high == np.inf else f"[{_num(low)}, {_num(high)})")
        parts.append(f"{where}: {values[start:stop].mean():+.3g}")
    return "; ".join(parts)


def decision_path(model: Mapping[str, Any], x: np.ndarray) -> list[str]:
    """Why the model answers what it does for one input: the conditions it met (trees), the rules
    that fired (RuleFit), or the largest contributions (linear, additive)."""
    x = np.asarray(x, dtype=np.float64).reshape(1, -1)
    kind, body, features = model["kind"], model["body"], list(model["features"])
    if kind == "tree":
        return _path_conditions(model, body, x) + [f"-> {_value_text(model, float(tree_values(body, x)[0]))}"]
    scale_note = (["(contributions to the log-odds of starving: negative means less likely)"]
                  if model.get("link") == "logistic" else [])
    if kind == "tree_sum":
        lines = list(scale_note)
        contributions = [float(tree_values(t, x)[0]) for t in body["trees"]]
        order = np.argsort([-abs(c) for c in contributions])[:3]
        for i in order:
            conditions = " and ".join(_path_conditions(model, body["trees"][i], x)) or "always"
            lines.append(f"tree {i + 1} adds {contributions[i] * body.get('scale', 1.0):+.4g} because {conditions}")
        return lines
    if kind == "rules":
        fired = []
        for rule in body["rules"]:
            if all(_holds(x[0], c) for c in rule["conditions"]):
                fired.append((float(rule["coef"]), " and ".join(_condition_text(features, c) for c in rule["conditions"])))
        fired.sort(key=lambda r: -abs(r[0]))
        return scale_note + ([f"{coef:+.4g} because {text}" for coef, text in fired[:5]] or ["no rule fired: linear terms only"])
    if kind == "linear":
        coef = np.asarray(body["coef"], dtype=float)
        parts = coef * x[0]
        order = np.argsort(-np.abs(parts))[:4]
        return scale_note + [f"{parts[i]:+.4g} from {features[i]} = {_num(x[0, i])}" for i in order]
    if kind == "additive":
        contributions = []
        for term in body["terms"]:
            index = []
            for f, cuts in zip(term["features"], term["cuts"], strict=True):
                index.append(int(np.searchsorted(np.asarray(cuts), x[0, f], side="right")) + 1)
            value = float(np.asarray(term["scores"], dtype=float)[tuple(index)])
            names = " x ".join(f"{features[f]} = {_num(x[0, f])}" for f in term["features"])
            contributions.append((value, names))
        contributions.sort(key=lambda c: -abs(c[0]))
        return scale_note + [f"{v:+.4g} from {names}" for v, names in contributions[:4]]
    return []


def _holds(row: np.ndarray, condition: list[Any]) -> bool:
    f, op, threshold = condition
    return bool(row[int(f)] <= float(threshold)) if op == "<=" else bool(row[int(f)] > float(threshold))


def _path_conditions(model: Mapping[str, Any], tree: Mapping[str, Any], x: np.ndarray) -> list[str]:
    features = model["features"]
    leaf = int(tree_leaves(tree, x)[0])
    # walk from the root to the leaf the input reached
    parent: dict[int, tuple[int, bool]] = {}
    for node, f in enumerate(tree["feature"]):
        if f >= 0:
            parent[tree["left"][node]] = (node, True)
            parent[tree["right"][node]] = (node, False)
    steps = []
    node = leaf
    while node in parent:
        up, went_left = parent[node]
        name, threshold = features[tree["feature"][up]], _num(tree["threshold"][up])
        steps.append(f"{name} = {_num(x[0, tree['feature'][up]])} {'<=' if went_left else '>'} {threshold}")
        node = up
    return steps[::-1]
