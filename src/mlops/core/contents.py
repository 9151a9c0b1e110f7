"""The typed contents of an Open Inference Protocol gRPC tensor (`InferTensorContents`): one
repeated field per kind of datatype. Read from any message with the protocol's field names
(the gateway's requests, a model server's answers); the raw form is `mlops.core.binary`."""

from __future__ import annotations

import math
from typing import Any

from mlops.errors import PayloadError

CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""Which typed field of InferTensorContents holds each datatype (FP16 only comes raw)."""


def typed_contents(tensor: Any, field: str = "inputs") -> list[Any]:
    """The values of a tensor sent in its typed `contents`, checked against its shape; BYTES
    elements as text. `field` (`inputs`, `outputs`) names the tensor in messages."""
    where = f"{field}[{tensor.name[:64]}]"
    name = CONTENTS.get(tensor.datatype)
    if name is None:
        raise PayloadError(
            f"{where}: {tensor.datatype!r} data must come in raw_{field[:-1]}_contents"
            if tensor.datatype == "FP16"
            else f"{where}: unknown datatype {tensor.datatype[:20]!r}"
        )
    found = getattr(tensor.contents, name)
    dims = list(tensor.shape)
    if all(d >= 0 for d in dims) and len(found) != math.prod(dims):
        raise PayloadError(
            f"{where}: shape {dims[:8]} needs {math.prod(dims)} values, contents has {len(found)}"
        )
    values = list(found)
    if tensor.datatype == "BYTES":
        try:
            return [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise PayloadError(f"{where}: a BYTES element is not UTF-8") from None
    return values
