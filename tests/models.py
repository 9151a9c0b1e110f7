"""Small real models of every flavor, trained on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

N_FEATURES = 6


def training_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=300, n_features=N_FEATURES, n_informative=4, random_state=seed
    )
    return x, y


def make_model_files(folder: Path) -> dict[str, Path]:
    import joblib
    import skops.io
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    x, y = training_data()
    files: dict[str, Path] = {}

    logreg = LogisticRegression(max_iter=300).fit(x, y)
    files["joblib"] = folder / "logreg.joblib"
    joblib.dump(logreg, files["joblib"])

    files["joblib2"] = folder / "logreg-c01.joblib"
    joblib.dump(LogisticRegression(C=0.1, max_iter=300).fit(x, y), files["joblib2"])

    files["regression"] = folder / "linreg.joblib"
    joblib.dump(LinearRegression().fit(x, x[:, 0] * 2.0), files["regression"])

    # skops trusts Gaussian naive Bayes by default; a forest holds types it does not trust
    # (sklearn.tree._tree.Tree), so registering one needs --trust.
    files["skops"] = folder / "bayes.skops"
    skops.io.dump(GaussianNB().fit(x, y), files["skops"])
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y)
    files["skops_forest"] = folder / "forest.skops"
    skops.io.dump(forest, files["skops_forest"])

    from skl2onnx import to_onnx

    onx = to_onnx(logreg, x[:1].astype(np.float32), options={"zipmap": False})
    files["onnx"] = folder / "logreg.onnx"
    files["onnx"].write_bytes(onx.SerializeToString())

    import mlflow.sklearn
    from mlflow.models import infer_signature

    files["mlflow"] = folder / "mlflow-logreg"
    mlflow.sklearn.save_model(
        logreg,
        str(files["mlflow"]),
        signature=infer_signature(x, logreg.predict(x)),
        serialization_format="pickle",
    )

    files["sample_json"] = folder / "sample.json"
    files["sample_json"].write_text(json.dumps({"instances": x[:4].tolist()}))
    files["sample_csv"] = folder / "sample.csv"
    header = ",".join(f"f{i}" for i in range(N_FEATURES))
    np.savetxt(files["sample_csv"], x[:4], delimiter=",", header=header, comments="")
    files["sample_wrong"] = folder / "sample-wrong.json"
    files["sample_wrong"].write_text(json.dumps([[1.0, 2.0]]))

    files["text"] = folder / "notes.txt"
    files["text"].write_text("not a model\n")
    files["empty_dir"] = folder / "empty-dir"
    files["empty_dir"].mkdir()
    return files


class SlowModel:
    """Predicts 1 for every row after sleeping; a stand-in for a model that hangs."""

    n_features_in_ = N_FEATURES
    classes_ = np.array([0, 1])

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, rows: np.ndarray) -> np.ndarray:
        import time

        time.sleep(self.seconds)
        return np.ones(len(rows), dtype=np.int64)


class BatchSizeModel:
    """Predicts, for every row, how many rows its predict call received (shows micro-batching)."""

    n_features_in_ = N_FEATURES

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds

    def predict(self, rows: np.ndarray) -> np.ndarray:
        import time

        time.sleep(self.seconds)
        return np.full(len(rows), float(len(rows)))


class DelayedModel:
    """Another model's predictions, each predict call `seconds` slower: a latency regression."""

    def __init__(self, inner: object, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds
        self.n_features_in_ = getattr(inner, "n_features_in_", N_FEATURES)
        if hasattr(inner, "classes_"):
            self.classes_ = inner.classes_

    def predict(self, rows: np.ndarray) -> np.ndarray:
        import time

        time.sleep(self.seconds)
        return np.asarray(self.inner.predict(rows))  # type: ignore[attr-defined]


class ConstantModel:
    """Predicts class 1 for every row: valid answers, unlike a real model's."""

    n_features_in_ = N_FEATURES
    classes_ = np.array([0, 1])

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.ones(len(rows), dtype=np.int64)


class NanModel:
    """Returns NaN: an invalid output."""

    n_features_in_ = N_FEATURES

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), np.nan)


class FailingModel:
    """Raises on every call."""

    n_features_in_ = N_FEATURES
    classes_ = np.array([0, 1])

    def predict(self, rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")


class FailsOnTrafficModel:
    """Answers rows of zeros (what the controller's readiness check sends when a version has no
    example rows) and raises on any other row: a candidate that looks ready, then fails live."""

    n_features_in_ = N_FEATURES
    classes_ = np.array([0, 1])

    def predict(self, rows: np.ndarray) -> np.ndarray:
        if np.any(np.asarray(rows) != 0):
            raise RuntimeError("boom on live traffic")
        return np.zeros(len(rows), dtype=np.int64)


def save_special(folder: Path) -> dict[str, Path]:
    """The test-only models above, pickled (register them with trust=True)."""
    import joblib

    out = {}
    for name, model in {
        "slow": SlowModel(5.0),
        "batch_size": BatchSizeModel(),
        "nan": NanModel(),
        "failing": FailingModel(),
        "fails_live": FailsOnTrafficModel(),
        "constant": ConstantModel(),
    }.items():
        out[name] = folder / f"{name}.joblib"
        joblib.dump(model, out[name])
    return out
