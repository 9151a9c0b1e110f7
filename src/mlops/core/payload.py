"""Decoding KServe V1 and V2 request bodies into a feature matrix, checked against a signature.

Everything a client can get wrong is caught here, before a model sees it, with a message
that names the field: rows of the wrong width, a tensor whose shape does not match its data,
text where numbers are expected, too many rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops.core.binary import decode_tensor, take_binary
from mlops.core.signature import Signature
from mlops.errors import PayloadError as PayloadError

V2_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}

NUMPY_TO_V2 = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


PROBABILITIES = "predict_proba"
"""The output that holds the class probabilities, one column per class."""
MAX_OUTPUTS = 8
MAX_DIMS = 8
"""Dimensions of a V2 tensor's shape: a tabular model takes two."""
MAX_DIM = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TEXT_DTYPES = ("string", "bytes", "object")


@dataclass(frozen=True)
class Decoded:
    rows: np.ndarray
    """(n, features), numeric; object dtype only when the signature has text features."""
    output_name: str | None = "predict"
    """The name the predictions are answered under; None when only probabilities are asked."""
    probabilities: bool = False
    """The class probabilities are asked too (output `predict_proba`)."""


def _numeric(signature: Signature) -> bool:
    specs = signature.features or signature.inputs
    return all(spec.dtype not in TEXT_DTYPES for spec in specs)


def _to_matrix(values: Any, signature: Signature, where: str) -> np.ndarray:
    numeric = _numeric(signature)
    try:
        if numeric:
            # One conversion that keeps what JSON sent: numbers stay numbers, and text (even
            # "1.5") is refused rather than parsed; nulls come as objects, NaN after casting.
            raw = np.asarray(values)
            if _has_text(raw):
                raise TypeError
            if raw.dtype == np.float64:
                array = raw
            elif raw.dtype == object:
                array = np.asarray(values, dtype=np.float64)  # nulls become NaN here
            else:
                array = raw.astype(np.float64)
        else:
            array = np.asarray(values, dtype=object)
    except (ValueError, TypeError):
        raise PayloadError(
            f"{where}: expected rows of numbers of equal length" + ("" if numeric else " or text")
        ) from None
    if array.ndim == 1:
        array = (
            array.reshape(1, -1) if signature.n_features not in (None, 1) else array.reshape(-1, 1)
        )
    if array.ndim != 2:
        raise PayloadError(f"{where}: expected a list of rows, got {array.ndim} dimensions")
    return array


def _has_text(raw: np.ndarray) -> bool:
    if raw.dtype.kind in "US":
        return True
    return raw.dtype.kind == "O" and any(isinstance(v, str) for v in raw.reshape(-1))


def check_rows(rows: np.ndarray, signature: Signature, max_rows: int, where: str) -> np.ndarray:
    if rows.dtype.kind == "f" and not signature.allows_missing and np.isnan(rows).any():
        raise PayloadError(
            f"{where}: null where a number is expected (this model does not accept missing values)"
        )
    if rows.shape[0] == 0:
        raise PayloadError(f"{where}: no rows to predict on")
    if rows.shape[0] > max_rows:
        raise PayloadError(f"{where}: {rows.shape[0]} rows, more than the limit of {max_rows}")
    expected = signature.n_features
    if expected is not None and rows.shape[1] != expected:
        raise PayloadError(
            f"{where}: rows have {rows.shape[1]} features, the model takes {expected}"
        )
    if rows.dtype.kind == "f":
        if np.isinf(rows).any():
            raise PayloadError(f"{where}: a number too large for float64")
        _check_ranges(rows, signature, where)
    elif rows.dtype == object:
        _check_scalars(rows, signature, where)
    return rows


def _check_ranges(rows: np.ndarray, signature: Signature, where: str) -> None:
    """Refuse values that the model's own input dtypes cannot hold (1e300 for a float32 input
    would reach the model as infinity; 300 for an int8 input would wrap around)."""
    specs = signature.features or signature.inputs
    if not specs:
        return
    if len(specs) == rows.shape[1]:
        dtypes = [spec.dtype for spec in specs]
    elif len(specs) == 1:
        dtypes = [specs[0].dtype] * rows.shape[1]
    else:
        return
    for column, dtype in enumerate(dtypes):
        bounds = _bounds(dtype)
        if bounds is None:
            continue
        values = rows[:, column]
        values = values[~np.isnan(values)]
        if values.size and (values.min() < bounds[0] or values.max() > bounds[1]):
            name = specs[column].name if len(specs) == rows.shape[1] else f"column {column}"
            raise PayloadError(f"{where}: a value of {name} does not fit the model's {dtype}")


def _bounds(dtype: str) -> tuple[float, float] | None:
    try:
        kind = np.dtype(dtype)
    except (TypeError, ValueError):
        return None
    if kind.kind == "f" and kind.itemsize < 8:
        info = np.finfo(kind)
        return float(info.min), float(info.max)
    if kind.kind in "iu":
        ints = np.iinfo(kind)
        return float(ints.min), float(ints.max)
    return None


def _check_scalars(rows: np.ndarray, signature: Signature, where: str) -> None:
    """Each value of a row with text features is one JSON scalar: text, a number a 64-bit
    column can hold, a boolean or null; never a list or an object."""
    names = [spec.name for spec in signature.features]
    for (_, column), value in np.ndenumerate(rows):
        if value is None or isinstance(value, str | bool | np.integer | np.bool_):
            continue
        name = names[column] if len(names) == rows.shape[1] else f"column {column}"
        if isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                raise PayloadError(f"{where}: {name} is a whole number outside the 64-bit range")
            continue
        if isinstance(value, float | np.floating):
            if math.isinf(value):
                raise PayloadError(f"{where}: {name} is a number too large for float64")
            continue
        kind = "an object" if isinstance(value, dict) else "a list"
        raise PayloadError(f"{where}: {name} is {kind}; expected a number or text")


def decode_v1(body: Any, signature: Signature, max_rows: int) -> Decoded:
    """`{"instances": [...]}` (rows, or objects keyed by feature name) or `{"inputs": [...]}`."""
    if not isinstance(body, dict):
        raise PayloadError('body: expected a JSON object with "instances"')
    instances = body.get("instances", body.get("inputs"))
    if not isinstance(instances, list):
        raise PayloadError('body: "instances" must be a list of rows')
    if not instances:
        raise PayloadError("instances: no rows to predict on")
    if len(instances) > max_rows:
        raise PayloadError(f"instances: {len(instances)} rows, more than the limit of {max_rows}")
    if instances and all(isinstance(row, dict) for row in instances):
        instances = _rows_from_objects(instances, signature)
    return Decoded(
        check_rows(_to_matrix(instances, signature, "instances"), signature, max_rows, "instances")
    )


def _rows_from_objects(objects: Sequence[dict[str, Any]], signature: Signature) -> list[list[Any]]:
    names = [spec.name for spec in signature.features]
    if not names:
        raise PayloadError("instances: this model's features have no names; send rows as lists")
    missing = [name for name in names if name not in objects[0]]
    if missing:
        raise PayloadError(f"instances[0]: missing feature {missing[0]!r}")
    try:
        return [[obj[name] for name in names] for obj in objects]
    except KeyError as exc:
        raise PayloadError(f"instances: a row lacks feature {exc.args[0]!r}") from None


def decode_v2(body: Any, signature: Signature, max_rows: int, binary: bytes = b"") -> Decoded:
    """The Open Inference Protocol's `{"inputs": [{name, shape, datatype, data}], ...}`; an
    input's data may instead be raw bytes from `binary` (the binary tensor data extension)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise PayloadError('body: expected {"inputs": [{"name", "shape", "datatype", "data"}]}')
    raws = take_binary(body["inputs"], binary)
    tensors = [v2_tensor(t, i, raws[i]) for i, t in enumerate(body["inputs"])]
    output_name, probabilities = requested_outputs(body.get("outputs"))
    if len(tensors) == 1:
        name, array = tensors[0]
        rows = array if array.ndim == 2 else _to_matrix(array, signature, f"inputs[{name}]")
    else:
        rows = _columns(tensors, signature)
    if _numeric(signature) and rows.dtype == object:
        raise PayloadError("inputs: BYTES data given where the model takes numbers")
    rows = rows.astype(np.float64) if _numeric(signature) else rows
    return Decoded(check_rows(rows, signature, max_rows, "inputs"), output_name, probabilities)


def requested_outputs(outputs: Any) -> tuple[str | None, bool]:
    """What a V2 request asks for: the name to answer the predictions under (`predict` by
    default; another name is an alias; None when only probabilities are asked), and whether
    the class probabilities (`predict_proba`) are asked too."""
    if outputs is None:
        return "predict", False
    if not isinstance(outputs, list) or len(outputs) > MAX_OUTPUTS:
        raise PayloadError(f"outputs: expected a list of at most {MAX_OUTPUTS} outputs")
    names = []
    for index, output in enumerate(outputs):
        name = output.get("name") if isinstance(output, dict) else None
        if not isinstance(name, str) or not name or len(name) > 128:
            raise PayloadError(f"outputs[{index}]: 'name' must be a non-empty string")
        names.append(name)
    labels = [n for n in names if n != PROBABILITIES]
    if len(set(labels)) > 1:
        raise PayloadError(
            f"outputs: one name for the predictions (got {', '.join(sorted(set(labels)))}); "
            f"{PROBABILITIES!r} for the class probabilities"
        )
    if not names:
        return "predict", False
    return (labels[0] if labels else None), PROBABILITIES in names


def v2_tensor(
    tensor: Any, index: int, binary: bytes | None = None, *, field: str = "inputs"
) -> tuple[str, np.ndarray]:
    """A V2 tensor object's name and values (from its JSON `data` or its `binary` bytes),
    checked against its shape and datatype; `field` names it in messages."""
    where = f"{field}[{index}]"
    if not isinstance(tensor, dict):
        raise PayloadError(f"{where}: expected an object with name, shape, datatype, data")
    name = tensor.get("name")
    shape = tensor.get("shape")
    datatype = tensor.get("datatype")
    data = tensor.get("data")
    if not isinstance(name, str):
        raise PayloadError(f"{where}: 'name' must be a string")
    where = f"{field}[{name[:64]}]"
    if (
        not isinstance(shape, list)
        or not 0 < len(shape) <= MAX_DIMS
        or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape)
    ):
        raise PayloadError(
            f"{where}: 'shape' must be a list of 1 to {MAX_DIMS} integers from 0 to {MAX_DIM}"
        )
    if datatype not in V2_DTYPES:
        raise PayloadError(f"{where}: unknown datatype {datatype!r}; one of {', '.join(V2_DTYPES)}")
    if binary is not None:
        array = decode_tensor(binary, datatype, shape, V2_DTYPES[datatype], where)
        if array.dtype.kind == "f" and np.isinf(array).any():
            raise PayloadError(f"{where}: a value does not fit {datatype}")
        return name, array
    if not isinstance(data, list):
        raise PayloadError(f"{where}: 'data' must be a list")
    needed = math.prod(shape)
    try:
        raw = np.asarray(data)
        if raw.size and not _fits(raw, datatype):
            raise TypeError
        if raw.size != needed:
            raise PayloadError(f"{where}: shape {shape} needs {needed} values, data has {raw.size}")
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(data, dtype=V2_DTYPES[datatype])
    except OverflowError:
        raise PayloadError(f"{where}: a value does not fit {datatype}") from None
    except (ValueError, TypeError):
        raise PayloadError(f"{where}: data is not {datatype}") from None
    if array.dtype.kind == "f" and np.isinf(array).any():
        raise PayloadError(f"{where}: a value does not fit {datatype}")
    return name, array.reshape(shape)


def _fits(raw: np.ndarray, datatype: str) -> bool:
    """Whether JSON values, as numpy read them, are of the declared datatype (no silent casts)."""
    kind = raw.dtype.kind
    if datatype == "BOOL":
        return kind == "b"
    if datatype.startswith("UINT"):
        return kind in "iu" and bool(raw.min() >= 0)
    if datatype.startswith("INT"):
        return kind in "iu"
    if datatype.startswith("FP"):
        return kind in "iuf" or kind == "O"  # "O": nulls among numbers, refused later
    return True


def _columns(tensors: list[tuple[str, np.ndarray]], signature: Signature) -> np.ndarray:
    """One tensor per feature (as pandas-style codecs send them), in the signature's order."""
    by_name = dict(tensors)
    names = [spec.name for spec in signature.features] or [name for name, _ in tensors]
    missing = [name for name in names if name not in by_name]
    if missing:
        raise PayloadError(f"inputs: missing feature {missing[0]!r}")
    columns = [by_name[name].reshape(-1) for name in names]
    if len({len(c) for c in columns}) != 1:
        raise PayloadError("inputs: feature tensors have different lengths")
    if not _numeric(signature):
        return np.column_stack([c.astype(object) for c in columns])
    for name, column in zip(names, columns, strict=True):
        if column.dtype == object:
            raise PayloadError(f"inputs[{name}]: BYTES data given where the model takes numbers")
    return np.column_stack([c.astype(np.float64) for c in columns])


def v2_datatype(array: np.ndarray) -> str:
    return NUMPY_TO_V2.get(array.dtype.name, "BYTES")


def invalid_output(array: np.ndarray) -> str | None:
    """Why a model's output cannot be served, or None when it is fine: it must be numbers,
    text, booleans or nulls (lists of them for a transform) that JSON and the store can hold."""
    kind = array.dtype.kind
    if kind == "f" and not np.all(np.isfinite(array)):
        return "the model returned NaN or infinite values"
    if kind in "biuf" or kind in "US":
        return None
    if kind == "O" and all(_plain(v) for v in array.reshape(-1).tolist()):
        return None
    return "the model returned values that are not numbers or text"


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return INT64_MIN <= value <= 2**64 - 1
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return False
