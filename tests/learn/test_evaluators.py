"""The JSON evaluators, on hand-written documents whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.learn.evaluators import (
    FORMAT,
    ModelFormatError,
    check_model,
    load_model,
    predict,
    predict_target,
    save_model,
    tree_depth,
)

# x0 <= 1 -> 10; else x1 <= 5 -> 20, else 30
TREE = {"feature": [0, -1, 1, -1, -1], "threshold": [1.0, 0, 5.0, 0, 0], "left": [1, -1, 3, -1, -1],
        "right": [2, -1, 4, -1, -1], "value": [0, 10.0, 0, 20.0, 30.0]}
X = np.array([[0.5, 0.0], [1.0, 9.0], [2.0, 5.0], [2.0, 6.0]])


def doc(kind, body, link="identity", task="regression", features=("x0", "x1"), **extra):
    return {"format": FORMAT, "kind": kind, "task": task, "target": "y", "features": list(features),
            "link": link, "body": body, **extra}


def test_tree_follows_sklearn_convention_left_when_less_or_equal():
    assert predict(doc("tree", TREE), X).tolist() == [10, 10, 20, 30]
    assert tree_depth(TREE) == 2


def test_tree_sum_adds_trees_with_init_and_scale():
    body = {"init": 1.0, "scale": 0.5, "trees": [TREE, TREE]}
    assert predict(doc("tree_sum", body), X).tolist() == [11, 11, 21, 31]


def test_logistic_link_gives_probabilities():
    body = {"intercept": 0.0, "coef": [1.0, 0.0]}
    p = predict(doc("linear", body, link="logistic", task="classification"), np.array([[0.0, 0], [50.0, 0]]))
    assert p[0] == pytest.approx(0.5) and p[1] == pytest.approx(1.0)


def test_rules_clip_linear_terms_and_add_the_rules_that_hold():
    body = {"intercept": 1.0, "linear": [{"feature": 0, "low": 0.0, "high": 1.5, "coef": 2.0}],
            "rules": [{"conditions": [[0, ">", 1.0], [1, "<=", 5.0]], "coef": 100.0}]}
    assert predict(doc("rules", body), X).tolist() == [2.0, 3.0, 104.0, 4.0]


def test_additive_terms_bin_values_with_cuts_going_up_at_equality():
    # main term on x0, cuts [1, 2]: bins 0 missing, 1 (<1), 2 ([1,2)), 3 (>=2), 4 unknown
    main = {"features": [0], "cuts": [[1.0, 2.0]], "scores": [0.0, -1.0, 0.0, 1.0, 0.0]}
    pair = {"features": [0, 1], "cuts": [[1.5], [5.0]], "scores": [[0, 0, 0, 0], [0, 0, 10, 0], [0, 20, 30, 0], [0] * 4]}
    body = {"intercept": 0.5, "terms": [main, pair]}
    # x=(0.5,0): main -1, pair [1][1]=0 ; (1,9): main 0, pair[1][2]=10 ; (2,5): main 1, pair[2][2]=30 ; (2,6): 1 + 30
    assert predict(doc("additive", body), X).tolist() == [-0.5, 10.5, 31.5, 31.5]


def test_predict_target_multiplies_back_a_ratio_with_a_cap():
    model = doc("linear", {"intercept": 0.5, "coef": [0.0, 0.0]}, output={"multiply_by": "x1", "at_most": 5.0})
    assert predict_target(model, X).tolist() == [0.0, 2.5, 2.5, 2.5]


def test_wrong_documents_are_refused(tmp_path):
    with pytest.raises(ModelFormatError):
        check_model({"format": "something else"})
    with pytest.raises(ModelFormatError):
        check_model(doc("forest", {}))
    with pytest.raises(ModelFormatError):
        predict(doc("tree", TREE), np.zeros((1, 3)))
    for rows in (X, X[:1]):
        with pytest.raises(ModelFormatError):
            predict(doc("rules", {"intercept": 0, "rules": [{"conditions": [[0, "==", 1]], "coef": 1}]}), rows)


def test_save_and_load_round_trip(tmp_path):
    model = doc("tree", TREE)
    save_model(model, tmp_path / "m.json")
    assert load_model(tmp_path / "m.json") == model


def test_one_input_at_a_time_gives_the_batch_answers():
    main = {"features": [0], "cuts": [[1.0, 2.0]], "scores": [0.0, -1.0, 0.0, 1.0, 0.0]}
    documents = [
        doc("tree", TREE),
        doc("tree_sum", {"init": 1.0, "scale": 0.5, "trees": [TREE, TREE]}),
        doc("rules", {"intercept": 1.0, "linear": [{"feature": 0, "low": 0.0, "high": 1.5, "coef": 2.0}],
                      "rules": [{"conditions": [[0, ">", 1.0], [1, "<=", 5.0]], "coef": 100.0}]}),
        doc("linear", {"intercept": 0.5, "coef": [1.0, -2.0]}, link="logistic", task="classification"),
        doc("additive", {"intercept": 0.5, "terms": [main]}),
    ]
    for model in documents:
        one_by_one = [predict(model, row[None, :])[0] for row in X]
        np.testing.assert_allclose(one_by_one, predict(model, X))
