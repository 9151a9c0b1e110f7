"""Scikit-learn's random forests and extra-trees, run tree by tree on the calling thread.

A forest's own `predict` and `predict_proba` hand each tree to joblib, which costs ~40 µs a
tree whatever the batch: 4.2 ms for one row through 100 trees, where the trees themselves take
0.25 ms. For the small batches a gateway makes, the sums are done here instead: the same trees,
in the same order, the same float32 input and the same float64 sums as scikit-learn's
sequential path, so the answers are the same to the last bit. Each forest is checked against
its own methods once before it is run this way, and anything this does not know (several
outputs, subclasses, rows with NaN or infinity, large batches for a forest trained with
`n_jobs`) goes to scikit-learn's own methods.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

LARGE_BATCH = 256
"""Rows from which a forest with `n_jobs` other than 1 is left to scikit-learn's threads."""

_KINDS = {
    "RandomForestClassifier": "DecisionTreeClassifier",
    "ExtraTreesClassifier": "ExtraTreeClassifier",
    "RandomForestRegressor": "DecisionTreeRegressor",
    "ExtraTreesRegressor": "ExtraTreeRegressor",
}

_checked: weakref.WeakKeyDictionary[Any, TreeSums | None] = weakref.WeakKeyDictionary()


class TreeSums:
    """The sums behind a fitted single-output forest's predictions."""

    def __init__(self, forest: Any) -> None:
        self.forest = forest
        self.trees = [tree.tree_ for tree in forest.estimators_]
        self.classes = getattr(forest, "classes_", None)
        self.width = int(forest.n_classes_) if self.classes is not None else 1
        self.threaded = forest.n_jobs not in (None, 1)
        self.features = int(forest.n_features_in_)

    def takes(self, rows: np.ndarray) -> bool:
        """Whether `rows` are numbers this runs as scikit-learn would: as many columns as the
        forest was fitted on, and every value finite once narrowed to float32, as the trees
        read them."""
        if not (
            rows.ndim == 2
            and rows.shape[1] == self.features
            and rows.dtype.kind in "fiub"
            and not (self.threaded and len(rows) >= LARGE_BATCH)
        ):
            return False
        with np.errstate(over="ignore"):
            return bool(np.isfinite(rows.astype(np.float32, copy=False)).all())

    def _sum(self, rows: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(rows, dtype=np.float32)
        total = np.zeros((len(x), self.width), dtype=np.float64)
        for tree in self.trees:
            total += tree.predict(x)[:, : self.width]
        total /= len(self.trees)
        return total

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self._sum(rows)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        means = self._sum(rows)
        if self.classes is None:
            return means[:, 0]
        return np.asarray(self.classes.take(np.argmax(means, axis=1), axis=0))


def tree_sums(model: Any) -> TreeSums | None:
    """The tree-by-tree stand-in for `model`, when it is a forest that agrees with it."""
    try:
        return _checked[model]
    except KeyError:
        pass
    except TypeError:  # not weakly referable: not an estimator of scikit-learn's
        return None
    found = _agreeing(model)
    _checked[model] = found
    return found


def method(model: Any, name: str, rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray] | None:
    """The stand-in for `model.<name>` on `rows` (`predict` or `predict_proba`), or None."""
    sums = tree_sums(model)
    if sums is None or not sums.takes(rows) or (name == "predict_proba" and sums.classes is None):
        return None
    return sums.predict_proba if name == "predict_proba" else sums.predict


def _agreeing(model: Any) -> TreeSums | None:
    tree_kind = _KINDS.get(type(model).__name__)
    if tree_kind is None or type(model).__module__ != "sklearn.ensemble._forest":
        return None
    try:
        if model.n_outputs_ != 1 or not all(
            type(tree).__name__ == tree_kind for tree in model.estimators_
        ):
            return None
        sums = TreeSums(model)
        probe = np.random.default_rng(0).normal(size=(8, int(model.n_features_in_)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a forest fitted on named columns, given an array
            agrees = _agrees(sums, model, probe)
    except Exception:
        return None
    return sums if agrees else None


def _agrees(sums: TreeSums, model: Any, probe: np.ndarray) -> bool:
    if sums.classes is not None:
        return np.array_equal(sums.predict_proba(probe), model.predict_proba(probe))
    return np.array_equal(sums.predict(probe), model.predict(probe))
