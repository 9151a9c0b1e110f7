"""Scikit-learn estimators, however they were saved (joblib, skops): their signature, the check
that they predict on the example rows, and running them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlops.core.signature import Signature, TensorSpec
from mlops.errors import InvalidInput, WrongFlavor
from mlops.flavors import forest, linear
from mlops.flavors.base import Artifact, Stage, as_array
from mlops.registry.signatures import merge_sample


class EstimatorFlavor:
    """What the flavors of scikit-learn estimators share once the model is loaded: its
    signature and its predict call. A subclass loads it."""

    def load(self, artifact: Artifact) -> Any:
        raise NotImplementedError

    def signature(self, artifact: Artifact, sample: Signature | None) -> Signature:
        return describe(self.load(artifact), artifact.what, sample)

    def predict(
        self, model: Any, rows: np.ndarray, stage: Stage, signature: Signature, label: str
    ) -> np.ndarray:
        return predict(model, rows, stage, label, own_names(model))


def describe(model: Any, what: str, sample: Signature | None) -> Signature:
    """A fitted estimator's signature, merged with the sample's, once it predicts on the
    example rows."""
    signature = merge_sample(from_estimator(model, what), sample, what)
    check_predicts(model, signature, what)
    return signature


def from_estimator(model: Any, what: str) -> Signature:
    """The signature of a fitted scikit-learn estimator or pipeline."""
    if not (hasattr(model, "predict") or hasattr(model, "transform")):
        raise WrongFlavor(
            f"{what} holds a {type(model).__name__}, not a model with predict() or transform()"
        )
    n = getattr(model, "n_features_in_", None)
    if n is None:
        raise InvalidInput(
            f"{what}: {type(model).__name__} does not say how many features it takes "
            "(is it fitted?); pass --sample FILE"
        )
    names = getattr(model, "feature_names_in_", None)
    features = (
        tuple(TensorSpec(str(name), "float64") for name in names) if names is not None else ()
    )
    classes = getattr(model, "classes_", None)
    kind = _output_kind(model, classes)
    output = (
        TensorSpec("transform", "float64", (-1, _width_out(model)))
        if kind == "transform"
        else TensorSpec("predict", _output_dtype(kind, classes))
    )
    return Signature(
        inputs=(TensorSpec("input", "float64", (-1, int(n))),),
        outputs=(output,),
        features=features,
        output_kind=kind,
        classes=tuple(
            c.item() if hasattr(c, "item") else c for c in (classes if classes is not None else ())
        ),
        allows_missing=_allows_nan(model),
    )


def _output_kind(model: Any, classes: Any) -> str:
    if classes is not None:
        return "classification"
    if getattr(model, "_estimator_type", None) == "regressor" or _is_regressor(model):
        return "regression"
    if hasattr(model, "transform") and not hasattr(model, "predict"):
        return "transform"
    return "unknown"


def _width_out(transformer: Any) -> int:
    """How many columns a fitted transformer gives (-1 when it does not say)."""
    try:
        return len(transformer.get_feature_names_out())
    except Exception:
        return -1


def _allows_nan(model: Any) -> bool:
    try:
        return bool(model.__sklearn_tags__().input_tags.allow_nan)
    except Exception:
        return False


def _output_dtype(kind: str, classes: Any) -> str:
    if kind == "regression":
        return "float64"
    if classes is not None:
        dtype = np.asarray(classes).dtype
        return "string" if dtype.kind in "OUS" else dtype.name
    return "object"


def _is_regressor(model: Any) -> bool:
    try:
        from sklearn.base import is_regressor

        return bool(is_regressor(model))
    except Exception:
        return False


def check_predicts(model: Any, signature: Signature, what: str) -> None:
    """Run the model on the example rows: a version that cannot predict on them is refused."""
    if not signature.example:
        return
    rows = np.asarray(signature.example, dtype=object)
    try:
        if hasattr(model, "predict"):
            model.predict(_input_for(model, rows))
        else:
            model.transform(_input_for(model, rows))
    except Exception as exc:
        raise InvalidInput(
            f"{what} failed to predict on the sample rows: {type(exc).__name__}: {exc}"
        ) from None


def _input_for(model: Any, rows: Any) -> Any:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        import pandas as pd

        return pd.DataFrame(rows, columns=list(names)).infer_objects()
    try:
        return rows.astype(np.float64)
    except (TypeError, ValueError):
        return rows


def predict(
    model: Any, rows: np.ndarray, stage: Stage, label: str, names: Sequence[str] | None
) -> np.ndarray:
    """Run a model with scikit-learn's methods (an MLflow pyfunc has `predict` too). With
    `names`, the rows go in as a DataFrame with these columns."""
    if stage != "transform":
        own = forest.method(model, stage, rows) or linear.method(model, stage, rows)
        if own is not None:
            return as_array(own(rows), columns=stage == "predict_proba")
    features: Any = rows
    if names is not None:
        import pandas as pd

        features = pd.DataFrame(rows, columns=list(names))
        if rows.dtype == object:
            features = features.infer_objects()
    if stage == "transform" and hasattr(model, "transform"):
        return as_array(model.transform(features), columns=True)
    if stage == "predict_proba":
        if not hasattr(model, "predict_proba"):
            raise TypeError(
                f"{label} gives no class probabilities (no predict_proba), which the "
                "next stage (a threshold) needs"
            )
        return as_array(model.predict_proba(features), columns=True)
    return as_array(model.predict(features))


def own_names(model: Any) -> Sequence[str] | None:
    """The columns a fitted estimator was trained on, when it names them."""
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else list(names)
