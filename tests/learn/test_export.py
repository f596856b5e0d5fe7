"""Exported documents predict what the fitted models predict (needs the `learn` extra)."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.learn.evaluators import predict

pytest.importorskip("sklearn")
zoo = pytest.importorskip("loratwin.learn.zoo")

FEATURES = ["a", "b", "c", "d"]


def data(classification: bool, n: int = 300):
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 10, size=(n, 4))
    X[:, 3] = np.round(X[:, 3])  # a feature with few values
    y = 2 * X[:, 0] + np.where(X[:, 1] > 5, 10, 0) + X[:, 2] * X[:, 3] * 0.1 + rng.normal(0, 0.5, n)
    if classification:
        y = (y > np.median(y)).astype(float)
    return X, y


def needs(family: str) -> None:
    if family in ("figs", "rulefit"):
        pytest.importorskip("imodels")
    if family == "ebm":
        pytest.importorskip("interpret")


# rulefit takes 2.5-4 s per task; the rest well under 1 s
@pytest.mark.parametrize(
    "family", ["tree", "linear", "forest", "gbm", "figs", pytest.param("rulefit", marks=pytest.mark.slow), "ebm"]
)
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_document_predicts_like_the_fitted_model(family, task):
    needs(family)
    classification = task == "classification"
    X, y = data(classification)
    model = zoo.fit(family, task, X, y)
    document = zoo.to_document(model, family, task, "y", FEATURES)
    ours = predict(document, X)
    if classification:
        theirs = model.predict_proba(X)[:, 1]
    else:
        theirs = model.predict(X)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_tree_depth_is_at_most_six():
    from loratwin.learn.evaluators import tree_depth

    X, y = data(False, 2000)
    document = zoo.to_document(zoo.fit("tree", "regression", X, y), "tree", "regression", "y", FEATURES)
    assert tree_depth(document["body"]) <= 6


def test_paper_error_and_macro_f1():
    assert zoo.paper_error(np.array([1.0, 0.0]), np.array([3.0, 0.0])) == pytest.approx(25.0)
    assert zoo.macro_f1(np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0])) == 1.0
    assert zoo.macro_f1(np.array([1, 0]), np.array([0, 1])) == 0.0


def test_group_folds_keep_each_workload_in_one_fold():
    groups = np.repeat(np.arange(10), 3)
    folds = zoo.group_folds(groups, 5)
    assert sorted(np.concatenate(folds).tolist()) == list(range(30))
    for test in folds:
        assert set(groups[test]).isdisjoint(set(groups[np.setdiff1d(np.arange(30), test)]))
