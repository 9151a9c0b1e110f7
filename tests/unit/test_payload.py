import numpy as np
import pytest

from mlops.core.payload import PayloadError, decode_v1, decode_v2, invalid_output, v2_datatype
from mlops.core.signature import Signature, TensorSpec

NUMERIC = Signature(
    inputs=(TensorSpec("input", "float64", (-1, 3)),),
    features=(TensorSpec("a", "float64"), TensorSpec("b", "float64"), TensorSpec("c", "float64")),
)
UNNAMED = Signature(inputs=(TensorSpec("input", "float32", (-1, 3)),))


def test_v1_rows_and_named_objects() -> None:
    assert decode_v1({"instances": [[1, 2, 3]]}, NUMERIC, 10).rows.tolist() == [[1.0, 2.0, 3.0]]
    named = decode_v1({"instances": [{"c": 3, "a": 1, "b": 2}]}, NUMERIC, 10)
    assert named.rows.tolist() == [[1.0, 2.0, 3.0]]
    assert decode_v1({"inputs": [[1, 2, 3], [4, 5, 6]]}, UNNAMED, 10).rows.shape == (2, 3)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2, 3], "JSON object"),
        ({"rows": []}, '"instances" must be a list'),
        ({"instances": []}, "no rows"),
        ({"instances": [[1, 2]]}, "rows have 2 features, the model takes 3"),
        ({"instances": [[1, 2, 3], [1, 2]]}, "equal length"),
        ({"instances": [["x", 2, 3]]}, "numbers"),
        ({"instances": [[1, 2, 3]] * 11}, "11 rows, more than the limit of 10"),
        ({"instances": [{"a": 1, "b": 2}]}, "missing feature 'c'"),
    ],
)
def test_v1_refusals_name_the_problem(body: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode_v1(body, NUMERIC, 10)


def test_v1_named_rows_need_named_features() -> None:
    with pytest.raises(PayloadError, match="no names"):
        decode_v1({"instances": [{"a": 1}]}, UNNAMED, 10)


def test_v2_one_tensor_and_one_tensor_per_feature() -> None:
    body = {
        "inputs": [
            {"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}
        ]
    }
    decoded = decode_v2(body, UNNAMED, 10)
    assert decoded.rows.tolist() == [[1, 2, 3], [4, 5, 6]]
    columns = {
        "inputs": [
            {"name": n, "shape": [2], "datatype": "FP64", "data": d}
            for n, d in (("b", [2, 5]), ("a", [1, 4]), ("c", [3, 6]))
        ],
        "outputs": [{"name": "label"}],
    }
    decoded = decode_v2(columns, NUMERIC, 10)
    assert decoded.rows.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert decoded.output_name == "label"


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "x", "shape": [1, 3], "datatype": "FP99", "data": [1, 2, 3]}, "unknown datatype"),
        (
            {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3]},
            "needs 6 values, data has 3",
        ),
        (
            {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
            "2 features, the model takes 3",
        ),
        ({"name": "x", "shape": [1, 3], "datatype": "INT32", "data": ["a", "b", "c"]}, "not INT32"),
        ({"name": "x", "shape": [1, 3], "datatype": "BYTES", "data": ["a", "b", "c"]}, "BYTES"),
        ({"name": "x", "shape": "1,3", "datatype": "FP32", "data": [1, 2, 3]}, "shape"),
        ({"shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, "name"),
    ],
)
def test_v2_refusals_name_the_tensor(tensor: dict[str, object], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode_v2({"inputs": [tensor]}, UNNAMED, 10)


def test_v2_needs_inputs() -> None:
    with pytest.raises(PayloadError, match="inputs"):
        decode_v2({"instances": [[1, 2, 3]]}, UNNAMED, 10)


def test_output_checks() -> None:
    assert invalid_output(np.array([1.0, np.nan])) == "the model returned NaN or infinite values"
    assert invalid_output(np.array([1.0, np.inf])) is not None
    assert invalid_output(np.array([0, 1])) is None
    assert v2_datatype(np.array([1, 2])) == "INT64"
    assert v2_datatype(np.array(["a"], dtype=object)) == "BYTES"
