"""Forests run tree by tree give scikit-learn's own answers, bit for bit, and whatever the
stand-in does not know goes to scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from mlops.flavors import forest
from mlops.flavors.estimator import predict

X, Y = make_classification(
    n_samples=300, n_features=6, n_classes=3, n_informative=4, random_state=0
)
XR, YR = make_regression(n_samples=300, n_features=6, random_state=0)

CLASSIFIERS = {
    "random forest": RandomForestClassifier(n_estimators=15, random_state=0).fit(X, Y),
    "extra trees": ExtraTreesClassifier(n_estimators=15, random_state=0).fit(X, Y),
    "string classes": RandomForestClassifier(n_estimators=15, random_state=0).fit(
        X, np.array(["cat", "dog", "eel"])[Y]
    ),
}
REGRESSORS = {
    "random forest": RandomForestRegressor(n_estimators=15, random_state=0).fit(XR, YR),
    "extra trees": ExtraTreesRegressor(n_estimators=15, random_state=0).fit(XR, YR),
}

rows = st.integers(1, 40).flatmap(
    lambda n: st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=6, max_size=6),
        min_size=n,
        max_size=n,
    )
)


@pytest.mark.parametrize("name", CLASSIFIERS)
@settings(max_examples=40, deadline=None)
@given(batch=rows)
def test_a_classifier_answers_as_scikit_learn_does(name: str, batch: list[list[float]]) -> None:
    model = CLASSIFIERS[name]
    x = np.asarray(batch, dtype=np.float64)
    assert forest.tree_sums(model) is not None
    proba = predict(model, x, "predict_proba", "m:1", None)
    assert np.array_equal(proba, model.predict_proba(x))
    assert np.array_equal(predict(model, x, "predict", "m:1", None), model.predict(x))


@pytest.mark.parametrize("name", REGRESSORS)
@settings(max_examples=40, deadline=None)
@given(batch=rows)
def test_a_regressor_answers_as_scikit_learn_does(name: str, batch: list[list[float]]) -> None:
    model = REGRESSORS[name]
    x = np.asarray(batch, dtype=np.float64)
    assert forest.tree_sums(model) is not None
    assert np.array_equal(predict(model, x, "predict", "m:1", None), model.predict(x))
    assert forest.method(model, "predict_proba", x) is None  # a regressor has no probabilities


def test_a_forest_fitted_on_named_columns_answers_as_with_its_columns() -> None:
    names = [f"f{i}" for i in range(6)]
    model = RandomForestClassifier(n_estimators=10, random_state=1).fit(
        pd.DataFrame(X, columns=names), Y
    )
    x = X[:20]
    assert forest.tree_sums(model) is not None
    own = model.predict_proba(pd.DataFrame(x, columns=names))
    assert np.array_equal(predict(model, x, "predict_proba", "m:1", names), own)


class Forest(RandomForestClassifier):
    pass


def _wrong(x: Any) -> np.ndarray:
    return np.zeros((len(x), 3))


def test_what_the_stand_in_does_not_know_goes_to_scikit_learn() -> None:
    multi = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, np.c_[Y, Y])
    subclass = Forest(n_estimators=5, random_state=0).fit(X, Y)
    disagreeing = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)
    disagreeing.predict_proba = _wrong
    for model in (multi, subclass, disagreeing):
        assert forest.tree_sums(model) is None
    assert forest.tree_sums(object()) is None


def test_rows_with_nan_or_infinity_and_large_threaded_batches_go_to_scikit_learn() -> None:
    model = CLASSIFIERS["random forest"]
    with_nan = X[:4].copy()
    with_nan[0, 0] = np.nan
    assert forest.method(model, "predict", with_nan) is None
    assert np.array_equal(
        predict(model, with_nan, "predict_proba", "m:1", None), model.predict_proba(with_nan)
    )
    with_inf = X[:4].copy()
    with_inf[1, 2] = np.inf
    assert forest.method(model, "predict", with_inf) is None
    with pytest.raises(ValueError, match="infinity"):
        predict(model, with_inf, "predict", "m:1", None)
    too_large = X[:4].copy()
    too_large[3, 1] = 1e39  # finite as float64, infinite as the float32 the trees read
    assert forest.method(model, "predict", too_large) is None
    with np.errstate(over="ignore"), pytest.raises(ValueError, match="too large"):
        predict(model, too_large, "predict", "m:1", None)
    assert forest.method(model, "predict", X[:4, :5]) is None  # too few columns: never read
    threaded = RandomForestClassifier(n_estimators=5, n_jobs=2, random_state=0).fit(X, Y)
    big = np.repeat(X, 2, axis=0)[: forest.LARGE_BATCH]
    assert forest.method(threaded, "predict", big[:10]) is not None
    assert forest.method(threaded, "predict", big) is None
