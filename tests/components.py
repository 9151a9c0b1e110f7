"""A real scikit-learn pipeline split into components, and params files, saved for `register`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.models import training_data

THRESHOLD = 0.7
LABELS = {0: "legit", 1: "fraud"}


@dataclass
class Split:
    """Two preprocessor + model pairs, each model fitted on its own preprocessor's output."""

    x: np.ndarray
    pre1: Any
    model1: Any
    pre2: Any
    model2: Any
    text_pre: Any
    text_model: Any
    text_rows: list[dict[str, Any]]
    files: dict[str, Path]


def threshold(probabilities: np.ndarray, classes: Any) -> np.ndarray:
    """What the threshold postprocessor must answer, computed here without mlops."""
    return np.where(probabilities[:, 1] >= THRESHOLD, classes[1], classes[0])


def make_split(folder: Path) -> Split:
    import skops.io
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.preprocessing import MinMaxScaler, PolynomialFeatures, StandardScaler

    x, y = training_data()
    x = x * 10.0 + 3.0  # far from standard: skipping the preprocessor changes the answers
    pre1 = StandardScaler().fit(x)
    model1 = LogisticRegression(max_iter=500).fit(pre1.transform(x), y)
    pre2 = MinMaxScaler().fit(x)
    model2 = LogisticRegression(C=0.05, max_iter=500).fit(pre2.transform(x), y)
    wide = PolynomialFeatures(2).fit(x)
    regression = LinearRegression().fit(pre1.transform(x), x[:, 0])
    from sklearn.datasets import make_classification

    x3, y3 = make_classification(
        n_samples=200, n_features=6, n_informative=4, n_classes=3, random_state=1
    )
    three = LogisticRegression(max_iter=500).fit(x3, y3)

    files: dict[str, Path] = {}
    for name, obj in {
        "pre1": pre1,
        "model1": model1,
        "pre2": pre2,
        "model2": model2,
        "wide": wide,
        "regression": regression,
        "three": three,
    }.items():
        files[name] = folder / f"{name}.skops"
        skops.io.dump(obj, files[name])

    texts = {
        "threshold": json.dumps({"threshold": THRESHOLD}),
        "labels": "labels:\n  0: legit\n  1: fraud\n",  # YAML, with the classes as numbers
        "threshold_labels": json.dumps(
            {"threshold": THRESHOLD, "labels": {str(k): v for k, v in LABELS.items()}}
        ),
        "labels_partial": json.dumps({"labels": {"1": "fraud"}}),
    }
    for name, text in texts.items():
        files[name] = folder / f"{name}.params"
        files[name].write_text(text)

    text_pre, text_model, text_rows = _text_pipeline(folder, files)
    return Split(x, pre1, model1, pre2, model2, text_pre, text_model, text_rows, files)


def _text_pipeline(folder: Path, files: dict[str, Path]) -> tuple[Any, Any, list[dict[str, Any]]]:
    """A ColumnTransformer over a number column and a text column, and a model on its output."""
    import pandas as pd
    import skops.io
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "amount": rng.normal(100.0, 30.0, n),
            "city": rng.choice(["paris", "lyon", "nice"], n),
        }
    )
    label = ((frame["amount"] > 110) | (frame["city"] == "nice")).astype(int)
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city"]),
        ]
    ).fit(frame)
    model = LogisticRegression(max_iter=500).fit(pre.transform(frame), label)
    rows = frame.head(12).to_dict(orient="records")
    files["text_pre"] = folder / "text-pre.skops"
    skops.io.dump(pre, files["text_pre"])
    files["text_model"] = folder / "text-model.skops"
    skops.io.dump(model, files["text_model"])
    files["text_sample"] = folder / "text-sample.json"
    files["text_sample"].write_text(json.dumps({"instances": rows[:4]}))
    return pre, model, rows
