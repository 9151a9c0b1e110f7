"""Decoding under hostile bodies (issue 10): values a datatype cannot hold, unbounded shapes,
non-scalar values, and outputs JSON cannot hold; lookup keys of the wrong kind."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops.core.lookup import InvalidKey, LookupSpec, key_problem, shown
from mlops.core.payload import PayloadError, decode_v1, decode_v2, invalid_output
from mlops.core.signature import Signature, TensorSpec

F64 = Signature(inputs=(TensorSpec("input", "float64", (-1, 2)),))
F32 = Signature(inputs=(TensorSpec("input", "float32", (-1, 2)),))
TEXT = Signature(
    inputs=(TensorSpec("k", "object"), TensorSpec("x", "object")),
    features=(TensorSpec("k", "object"), TensorSpec("x", "object")),
    allows_missing=True,
)
SPEC = LookupSpec("features", "customers", "customer_id", ("income",), ("customer_id",))


def tensor(shape: list[object], datatype: str, data: list[object]) -> dict[str, object]:
    return {"inputs": [{"name": "t", "shape": shape, "datatype": datatype, "data": data}]}


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("FP32", 1e300), ("FP16", 70000.0), ("INT8", 300), ("UINT8", -1), ("INT64", 2**63)],
)
def test_v2_values_the_datatype_cannot_hold(datatype: str, value: object) -> None:
    with pytest.raises(PayloadError, match=r"inputs\[t\]"):
        decode_v2(tensor([1, 2], datatype, [value, 1]), F64, 10)


def test_values_the_models_dtype_cannot_hold() -> None:
    assert decode_v1({"instances": [[3e38, 1]]}, F32, 10).rows.shape == (1, 2)
    with pytest.raises(PayloadError, match="float32"):
        decode_v1({"instances": [[1e300, 1]]}, F32, 10)
    with pytest.raises(PayloadError, match="float32"):
        decode_v2(tensor([1, 2], "FP64", [1e300, 1]), F32, 10)
    assert decode_v1({"instances": [[1e300, 1]]}, F64, 10).rows[0, 0] == 1e300


@pytest.mark.parametrize(
    "shape", [[0, 2**62], [2**62, 2**62], [0, 2**64], [1] * 9, [True, 2], [-1, 2], "1,2", []]
)
def test_v2_shapes_are_bounded(shape: object) -> None:
    with pytest.raises(PayloadError, match=r"inputs\[t\]"):
        decode_v2(tensor(shape, "FP64", []), F64, 10)  # type: ignore[arg-type]


def test_v1_rows_are_counted_before_they_are_converted() -> None:
    with pytest.raises(PayloadError, match="100000 rows, more than the limit of 10"):
        decode_v1({"instances": [[]] * 100_000}, F64, 10)


def test_a_bytes_tensor_among_numeric_ones_is_named() -> None:
    body = {
        "inputs": [
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "b", "shape": [1], "datatype": "BYTES", "data": ["x"]},
        ]
    }
    with pytest.raises(PayloadError, match=r"inputs\[b\]: BYTES"):
        decode_v2(body, F64, 10)
    body["inputs"][1] = {"name": "b", "shape": [1], "datatype": "INT32", "data": [2]}
    assert decode_v2(body, F64, 10).rows.tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": 1}, "k is an object"),
        ([1, 2], "k is a list"),
        (2**64 - 1, "k is a whole number outside the 64-bit range"),
    ],
)
def test_text_rows_hold_scalars_only(value: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode_v1({"instances": [{"k": value, "x": "a"}]}, TEXT, 10)


def test_text_rows_keep_scalars() -> None:
    rows = decode_v1({"instances": [{"k": 3, "x": None}, {"k": "a", "x": 1.5}]}, TEXT, 10).rows
    assert rows.tolist() == [[3, None], ["a", 1.5]]


def test_outputs_must_be_numbers_or_text() -> None:
    assert invalid_output(np.array([1, 2])) is None
    assert invalid_output(np.array(["a", "b"])) is None
    assert invalid_output(np.array([None, "a", 3, [1.0, 2.0]], dtype=object)) is None
    assert invalid_output(np.array([1 + 2j])) is not None
    assert invalid_output(np.array([{1, 2}, "a"], dtype=object)) is not None
    assert invalid_output(np.array([2**70], dtype=object)) is not None
    assert invalid_output(np.array([math.inf], dtype=object)) is not None


def test_lookup_keys() -> None:
    assert key_problem(3) is None
    assert key_problem("abc") is None
    assert key_problem(True) is not None
    assert key_problem(2**64) is not None
    assert key_problem("k" * 2000) is not None
    rows = np.array([[3.0], [2.5], [None], [math.nan], ["x"], [3]], dtype=object)
    assert SPEC.keys(rows) == [3, "x"]
    with pytest.raises(InvalidKey, match="customer_id: a whole number outside the 64-bit"):
        SPEC.keys(np.array([[float(2**64)]], dtype=object))
    with pytest.raises(InvalidKey, match="customer_id: expected text or a whole number"):
        SPEC.keys(np.array([[True]], dtype=object))
    assert len(shown("k" * 5000)) == 64
