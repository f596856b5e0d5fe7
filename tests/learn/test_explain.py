"""Models printed as rules, and the path one input takes."""

from __future__ import annotations

import numpy as np

from loratwin.learn.evaluators import FORMAT
from loratwin.learn.explain import decision_path, describe_model

TREE = {"feature": [0, -1, -1], "threshold": [100.0, 0, 0], "left": [1, -1, -1], "right": [2, -1, -1],
        "value": [0, 0.1, 0.9]}


def model(kind, body, **extra):
    return {"format": FORMAT, "kind": kind, "task": "classification", "target": "starved",
            "features": ["offered_tok_s", "max_loras"], "link": "identity", "body": body, **extra}


def test_a_tree_prints_as_nested_conditions():
    text = describe_model(model("tree", TREE))
    assert "if offered_tok_s <= 100:" in text
    assert "else (offered_tok_s > 100):" in text
    assert "P(starved) = 0.90" in text


def test_the_path_names_the_conditions_met_with_the_values():
    lines = decision_path(model("tree", TREE), np.array([250.0, 8.0]))
    assert lines[0] == "offered_tok_s = 250 > 100"
    assert lines[-1] == "-> P(starved) = 0.90"


def test_rules_print_with_coefficients_and_fire_on_their_inputs():
    body = {"intercept": -1.0, "linear": [{"feature": 1, "low": 0, "high": 64, "coef": 0.01}],
            "rules": [{"conditions": [[0, ">", 100.0], [1, "<=", 32.0]], "coef": 3.0}]}
    m = model("rules", body, link="logistic")
    text = describe_model(m)
    assert "+3 if offered_tok_s > 100 and max_loras <= 32" in text
    assert "P(starved) = 1 / (1 + exp(-score))" in text
    assert decision_path(m, np.array([250.0, 8.0]))[1:] == ["+3 because offered_tok_s > 100 and max_loras <= 32"]


def test_additive_and_sum_of_trees_print_their_terms():
    main = {"features": [0], "cuts": [[100.0]], "scores": [0.0, -2.0, 2.0, 0.0]}
    text = describe_model(model("additive", {"intercept": 0.0, "terms": [main]}, link="logistic"))
    assert "offered_tok_s: < 100: -2" in text
    tree_sum = model("tree_sum", {"init": 0.0, "scale": 1.0, "trees": [TREE, TREE]})
    assert "tree 2:" in describe_model(tree_sum)
    assert decision_path(tree_sum, np.array([50.0, 8.0]))[0].startswith("tree 1 adds +0.1 because offered_tok_s = 50 <= 100")
