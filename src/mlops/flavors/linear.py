"""Scikit-learn's linear models, predicted on the calling thread without scikit-learn's input
checks.

`LogisticRegression.predict` spends ~250 µs checking its input (the same whether the batch
holds one row or eight) around a product that takes a few microseconds; at the small batches
a gateway makes, that is most of a request's cost. The gateway has checked the rows already
(a finite number matrix of the model's width), so the product is taken here instead: the same
`rows @ coef_.T + intercept_` in float64 as scikit-learn's `decision_function`, and the same
rule from scores to classes, so the answers are the same to the last bit. Each model is
checked against its own `predict` once before it is run this way; anything else (subclasses,
probabilities, sparse or non-finite rows, another width) goes to scikit-learn.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

_KINDS = {
    ("sklearn.linear_model._logistic", "LogisticRegression"): True,
    ("sklearn.linear_model._base", "LinearRegression"): False,
    ("sklearn.linear_model._ridge", "Ridge"): False,
}
"""The models run here, and whether each is a classifier."""

_checked: weakref.WeakKeyDictionary[Any, Product | None] = weakref.WeakKeyDictionary()


class Product:
    """The scores behind a fitted linear model's predictions."""

    def __init__(self, model: Any, classifier: bool) -> None:
        self.coef_t = np.asarray(model.coef_, dtype=np.float64).T
        self.intercept = np.asarray(model.intercept_, dtype=np.float64)
        self.classes = np.asarray(model.classes_) if classifier else None
        self.features = int(model.n_features_in_)

    def takes(self, rows: np.ndarray) -> bool:
        return bool(
            rows.ndim == 2
            and rows.shape[1] == self.features
            and rows.dtype.kind in "fiub"
            and np.isfinite(rows).all()
        )

    def predict(self, rows: np.ndarray) -> np.ndarray:
        scores = np.asarray(rows, dtype=np.float64) @ self.coef_t + self.intercept
        if scores.ndim > 1 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        if self.classes is None:
            return scores
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return np.asarray(self.classes.take(indices, axis=0))


INLINE_COEFS = 1 << 16
"""Coefficients up to which a model is cheap enough for an event loop (a batch of 64 rows is
then a few million multiply-adds at most)."""


def bounded(model: Any) -> bool:
    """Whether `model` is one of the linear models run here, and small: its cost is bounded
    by its rows and coefficients (no code of the model's own runs), so it may run on an event
    loop."""
    if (type(model).__module__, type(model).__name__) not in _KINDS:
        return False
    return int(np.size(getattr(model, "coef_", ()))) <= INLINE_COEFS


def method(model: Any, name: str, rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray] | None:
    """The stand-in for `model.predict` on `rows`, or None (also for any other method)."""
    if name != "predict":
        return None
    try:
        product = _checked[model]
    except KeyError:
        product = _checked[model] = _agreeing(model)
    except TypeError:  # not weakly referable: not an estimator of scikit-learn's
        return None
    if product is None or not product.takes(rows):
        return None
    return product.predict


def _agreeing(model: Any) -> Product | None:
    classifier = _KINDS.get((type(model).__module__, type(model).__name__))
    if classifier is None:
        return None
    try:
        product = Product(model, classifier)
        probe = np.random.default_rng(0).normal(size=(16, product.features))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a model fitted on named columns, given an array
            agrees = np.array_equal(product.predict(probe), model.predict(probe))
    except Exception:
        return None
    return product if agrees else None
