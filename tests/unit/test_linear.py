"""Linear models predicted without scikit-learn's input checks give its own answers, bit for
bit, and whatever the stand-in does not know goes to scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier

from mlops.flavors import linear
from mlops.flavors.estimator import predict

X2, Y2 = make_classification(n_samples=200, n_features=5, n_informative=3, random_state=0)
X3, Y3 = make_classification(
    n_samples=300, n_features=5, n_classes=3, n_informative=3, n_redundant=1, random_state=0
)
XR, YR = make_regression(n_samples=200, n_features=5, random_state=0)

MODELS: dict[str, Any] = {
    "binary": LogisticRegression(max_iter=500).fit(X2, Y2),
    "three classes": LogisticRegression(max_iter=500).fit(X3, Y3),
    "string classes": LogisticRegression(max_iter=500).fit(X2, np.array(["no", "yes"])[Y2]),
    "linear regression": LinearRegression().fit(XR, YR),
    "ridge": Ridge().fit(XR, YR),
    "two targets": LinearRegression().fit(XR, np.c_[YR, -YR]),
}

rows = st.integers(1, 40).flatmap(
    lambda n: st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=5, max_size=5),
        min_size=n,
        max_size=n,
    )
)


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=40, deadline=None)
@given(batch=rows)
def test_a_linear_model_answers_as_scikit_learn_does(name: str, batch: list[list[float]]) -> None:
    model = MODELS[name]
    x = np.asarray(batch, dtype=np.float64)
    assert linear.method(model, "predict", x) is not None
    assert np.array_equal(predict(model, x, "predict", "m:1", None), model.predict(x))


def test_what_it_does_not_know_goes_to_scikit_learn() -> None:
    model = MODELS["binary"]
    x = X2[:4]
    assert linear.method(model, "predict_proba", x) is None
    assert linear.method(model, "predict", x[:, :3]) is None  # another width
    with_nan = x.copy()
    with_nan[0, 0] = np.nan
    assert linear.method(model, "predict", with_nan) is None
    assert linear.method(model, "predict", x.astype(object)) is None

    class Mine(LogisticRegression):
        pass

    assert linear.method(Mine(max_iter=500).fit(X2, Y2), "predict", x) is None
    assert linear.method(SGDClassifier().fit(X2, Y2), "predict", x) is None
    # A model whose own predict disagrees with the product is left to its predict.
    tampered = LogisticRegression(max_iter=500).fit(X2, Y2)
    tampered.predict = lambda rows: np.zeros(len(rows), dtype=int)  # type: ignore[method-assign]
    assert linear.method(tampered, "predict", x) is None


def test_named_columns_give_the_same_answers() -> None:
    frame = pd.DataFrame(X2, columns=[f"c{i}" for i in range(5)])
    model = LogisticRegression(max_iter=500).fit(frame, Y2)
    names = list(frame.columns)
    assert np.array_equal(predict(model, X2, "predict", "m:1", names), model.predict(frame))
    assert linear.method(model, "predict", X2) is not None
