"""Pipeline order, whether components fit together, and what params stages answer."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mlops.core.components import Stage, component_rank, pipeline_problem
from mlops.core.signature import Signature, TensorSpec
from mlops.errors import InvalidInput
from mlops.registry.params import parse_params


def model(
    n: int = 4, kind: str = "classification", classes: tuple[object, ...] = (0, 1)
) -> Signature:
    return Signature(
        inputs=(TensorSpec("input", "float64", (-1, n)),), output_kind=kind, classes=classes
    )


def scaler(n_in: int = 4, n_out: int = 4) -> Signature:
    return Signature(
        inputs=(TensorSpec("input", "float64", (-1, n_in)),),
        outputs=(TensorSpec("transform", "float64", (-1, n_out)),),
        output_kind="transform",
    )


THRESHOLD = parse_params(b'{"threshold": 0.7}', "t").signature()
LABELS = parse_params(b'{"labels": {"0": "legit", "1": "fraud"}}', "l").signature()


def test_components_run_preprocessors_model_postprocessors() -> None:
    names = ["postprocessor", "model", "preprocessor-b", "preprocessor-a", "postprocessor-2"]
    assert sorted(names, key=component_rank) == [
        "preprocessor-a",
        "preprocessor-b",
        "model",
        "postprocessor",
        "postprocessor-2",
    ]


def test_a_split_pipeline_fits() -> None:
    stages = [
        Stage("postprocessor", "t:1", THRESHOLD),
        Stage("model", "m:1", model()),
        Stage("preprocessor", "s:1", scaler()),
    ]
    assert pipeline_problem(stages) is None
    assert (
        pipeline_problem([Stage("model", "m:1", model()), Stage("postprocessor", "l:1", LABELS)])
        is None
    )


@pytest.mark.parametrize(
    ("stages", "problem"),
    [
        ([Stage("model", "t:1", THRESHOLD)], "is a params file: it can only be a postprocessor"),
        (
            [
                Stage("model", "m:1", model(kind="regression", classes=())),
                Stage("postprocessor", "t:1", THRESHOLD),
            ],
            "is a regression model",
        ),
        (
            [
                Stage("model", "m:1", model(classes=(0, 1, 2))),
                Stage("postprocessor", "t:1", THRESHOLD),
            ],
            "has 3 classes",
        ),
        (
            [
                Stage("model", "m:1", model(classes=(0, 1, 2))),
                Stage("postprocessor", "l:1", LABELS),
            ],
            "no label for class '2'",
        ),
        (
            [Stage("preprocessor", "s:1", scaler(n_out=9)), Stage("model", "m:1", model())],
            "'preprocessor' \\(s:1\\) gives 9 columns but component 'model' \\(m:1\\) takes 4",
        ),
        (
            [
                Stage("model", "m:1", model()),
                Stage("postprocessor-a", "s:1", scaler()),
                Stage("postprocessor-b", "t:1", THRESHOLD),
            ],
            "must follow the model",
        ),
    ],
)
def test_components_that_do_not_fit(stages: list[Stage], problem: str) -> None:
    found = pipeline_problem(stages)
    assert found is not None
    assert re.search(problem, found), found


def test_what_a_signature_does_not_say_passes() -> None:
    unknown_width = Signature(
        inputs=(TensorSpec("input", "float64", (-1, 4)),),
        outputs=(TensorSpec("transform", "float64", (-1, -1)),),
        output_kind="transform",
    )
    mlflow = Signature(inputs=(TensorSpec("input", "float64", (-1, 9)),), output_kind="unknown")
    stages = [
        Stage("preprocessor", "s:1", unknown_width),
        Stage("model", "m:1", mlflow),
        Stage("postprocessor", "t:1", THRESHOLD),
    ]
    assert pipeline_problem(stages) is None


def test_a_threshold_answers_the_second_class_at_or_above_it() -> None:
    params = parse_params(b"threshold: 0.7", "t")
    probabilities = np.array([[0.5, 0.5], [0.3, 0.7], [0.1, 0.9], [0.31, 0.69]])
    assert params.apply(probabilities, (0, 1)).tolist() == [0, 1, 1, 0]
    named = params.apply(probabilities, ("ham", "spam"))
    assert named.dtype == object
    assert named.tolist() == ["ham", "spam", "spam", "ham"]
    with pytest.raises(ValueError, match="two classes"):
        params.apply(np.array([0.2, 0.9]), (0, 1))


def test_a_label_map_names_classes_and_refuses_unknown_ones() -> None:
    params = parse_params(b'{"labels": {"0": "legit", "1": "fraud"}}', "l")
    assert params.apply(np.array([1, 0, 1]), None).tolist() == ["fraud", "legit", "fraud"]
    assert params.apply(np.array([1.0, 0.0]), None).tolist() == ["fraud", "legit"]
    with pytest.raises(ValueError, match="no label for class '2'"):
        params.apply(np.array([0, 2]), None)
    both = parse_params(b'{"threshold": 0.5, "labels": {"0": "legit", "1": "fraud"}}', "b")
    assert both.apply(np.array([[0.6, 0.4], [0.2, 0.8]]), (0, 1)).tolist() == ["legit", "fraud"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1, 2]", "is not a params file"),
        (b"{}", "declares nothing"),
        (b'{"threshold": 1}', "between 0 and 1"),
        (b'{"threshold": NaN}', "between 0 and 1"),
        (b'{"labels": {"0": null}}', "text or a number"),
    ],
)
def test_invalid_params(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_params(data, "p")
