"""The Open Inference Protocol's binary tensor data extension (as Triton and its clients use
it): a body whose first `Inference-Header-Content-Length` bytes are the JSON request, followed
by the raw bytes of each input that says `"parameters": {"binary_data_size": N}`, in the
order of the inputs; and the same shape for an answer whose outputs are asked in binary.

Raw tensors are little-endian, row-major; BYTES elements are each a 4-byte little-endian
length and that many bytes. Every size is checked against the tensor's shape and datatype
before anything is decoded.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlops.errors import PayloadError

HEADER = "inference-header-content-length"
SIZE_KEY = "binary_data_size"
HEADER_DIGITS = 12


def split_body(body: bytes, header: str | None) -> tuple[bytes, bytes]:
    """The JSON part of a body and the binary part after it (empty without the header)."""
    if header is None:
        return body, b""
    header = header.strip()
    if not (header.isascii() and header.isdigit() and len(header) <= HEADER_DIGITS):
        raise PayloadError("Inference-Header-Content-Length: expected a number of bytes")
    length = int(header)
    if length > len(body):
        raise PayloadError(
            f"Inference-Header-Content-Length: {length} bytes of JSON runs past the body's "
            f"{len(body)} bytes"
        )
    return body[:length], body[length:]


def binary_size(tensor: dict[str, Any], where: str) -> int | None:
    """The `binary_data_size` an input declares, or None for an input with JSON data."""
    parameters = tensor.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise PayloadError(f"{where}: 'parameters' must be an object")
    size = parameters.get(SIZE_KEY)
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise PayloadError(f"{where}: '{SIZE_KEY}' must be a whole number of bytes")
    return size


def take_binary(inputs: Sequence[Any], binary: bytes) -> list[bytes | None]:
    """Each input's raw bytes (None for one with JSON data), taken in order from `binary`,
    which they must use up exactly."""
    out: list[bytes | None] = []
    offset = 0
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}]"
        size = binary_size(tensor, where) if isinstance(tensor, dict) else None
        if size is None:
            out.append(None)
            continue
        if "data" in tensor:
            raise PayloadError(f"{where}: both 'data' and '{SIZE_KEY}' given")
        if offset + size > len(binary):
            raise PayloadError(
                f"{where}: {SIZE_KEY} {size} runs past the {len(binary)} bytes of binary data"
            )
        out.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise PayloadError(
            f"body: {len(binary) - offset} bytes of binary data that no input claims"
        )
    return out


def decode_tensor(
    raw: bytes, datatype: str, shape: Sequence[int], dtype: Any, where: str
) -> np.ndarray:
    """A tensor from its raw bytes, which must be exactly what its shape and datatype need."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_elements(raw, count, where).reshape(tuple(shape))
    little = np.dtype(dtype).newbyteorder("<")
    needed = count * little.itemsize
    if len(raw) != needed:
        raise PayloadError(
            f"{where}: {len(raw)} bytes of binary data, but shape {list(shape)} of {datatype} "
            f"needs {needed}"
        )
    array = np.frombuffer(raw, dtype=little).reshape(tuple(shape))
    if datatype == "BOOL" and raw and max(raw) > 1:
        raise PayloadError(f"{where}: BOOL bytes must be 0 or 1")
    return array.astype(np.dtype(dtype).newbyteorder("="))


def _bytes_elements(raw: bytes, count: int, where: str) -> np.ndarray:
    # Each element takes at least its 4-byte length: a count that cannot fit is refused
    # before any element is read.
    if count * 4 > len(raw):
        raise PayloadError(
            f"{where}: {count} BYTES elements need at least {4 * count} bytes, got {len(raw)}"
        )
    values: list[str] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(raw):
            raise PayloadError(f"{where}: BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise PayloadError(f"{where}: a BYTES element runs past the tensor's data")
        try:
            values.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise PayloadError(f"{where}: a BYTES element is not UTF-8 text") from None
        offset += length
    if offset != len(raw):
        raise PayloadError(f"{where}: {len(raw) - offset} bytes after the last BYTES element")
    out = np.empty(count, dtype=object)
    out[:] = values
    return out


def encode_tensor(array: np.ndarray) -> bytes:
    """An output's raw bytes: little-endian numbers, or length-prefixed UTF-8 for text."""
    if array.dtype.kind in "biuf":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in array.reshape(-1).tolist():
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts += [struct.pack("<I", len(data)), data]
    return b"".join(parts)


def wants_binary(request: Any, name: str) -> bool:
    """Whether the request asks for output `name` as binary data: by that output's own
    `binary_data`, or, failing that, by the request's `binary_data_output`."""
    if not isinstance(request, dict):
        return False
    for output in request.get("outputs") or ():
        if isinstance(output, dict) and output.get("name") == name:
            own = output.get("parameters")
            if isinstance(own, dict) and "binary_data" in own:
                return own["binary_data"] is True
    parameters = request.get("parameters")
    return isinstance(parameters, dict) and parameters.get("binary_data_output") is True
