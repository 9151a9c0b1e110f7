"""The binary tensor data extension: what a body's sizes must agree on, and round trips."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops.core.binary import (
    decode_tensor,
    encode_tensor,
    split_body,
    take_binary,
    wants_binary,
)
from mlops.core.payload import V2_DTYPES
from mlops.errors import PayloadError

NUMERIC = [d for d in V2_DTYPES if d not in ("BYTES", "BOOL")]


@given(st.sampled_from(NUMERIC), st.lists(st.integers(0, 100), min_size=1, max_size=24))
def test_numbers_round_trip_little_endian(datatype: str, values: list[int]) -> None:
    array = np.asarray(values, dtype=V2_DTYPES[datatype])
    raw = encode_tensor(array)
    assert raw == array.astype(array.dtype.newbyteorder("<")).tobytes()
    back = decode_tensor(raw, datatype, [len(values)], V2_DTYPES[datatype], "t")
    np.testing.assert_array_equal(back, array)


@given(st.lists(st.text(max_size=8), min_size=1, max_size=12))
def test_text_round_trips_as_length_prefixed_utf8(values: list[str]) -> None:
    raw = encode_tensor(np.asarray(values, dtype=object))
    back = decode_tensor(raw, "BYTES", [len(values)], object, "t")
    assert back.tolist() == values


def test_sizes_that_disagree_are_refused() -> None:
    with pytest.raises(PayloadError, match="needs 16"):
        decode_tensor(b"\0" * 8, "FP64", [2], np.float64, "t")
    with pytest.raises(PayloadError, match="0 or 1"):
        decode_tensor(b"\x02", "BOOL", [1], np.bool_, "t")
    one = struct.pack("<I", 3) + b"abc"
    with pytest.raises(PayloadError, match="after the last"):
        decode_tensor(one + b"x", "BYTES", [1], object, "t")
    with pytest.raises(PayloadError, match="runs past"):
        decode_tensor(struct.pack("<I", 9) + b"abc", "BYTES", [1], object, "t")
    with pytest.raises(PayloadError, match="not UTF-8"):
        decode_tensor(struct.pack("<I", 1) + b"\xff", "BYTES", [1], object, "t")
    with pytest.raises(PayloadError, match="at least"):
        decode_tensor(one, "BYTES", [2**40], object, "t")


def test_the_body_splits_where_its_header_says() -> None:
    assert split_body(b"{}abc", "2") == (b"{}", b"abc")
    assert split_body(b"{}", None) == (b"{}", b"")
    for bad in ("-1", "x", "1" * 13, "99"):
        with pytest.raises(PayloadError):
            split_body(b"{}", bad)
    sized = {"parameters": {"binary_data_size": 2}}
    assert take_binary([sized, {"data": [1]}, sized], b"abcd") == [b"ab", None, b"cd"]
    with pytest.raises(PayloadError, match="whole number"):
        take_binary([{"parameters": {"binary_data_size": -1}}], b"")
    with pytest.raises(PayloadError, match="must be an object"):
        take_binary([{"parameters": [1]}], b"")


def test_which_outputs_are_asked_in_binary() -> None:
    assert wants_binary({"parameters": {"binary_data_output": True}}, "predict")
    own = {"outputs": [{"name": "predict", "parameters": {"binary_data": False}}]}
    assert not wants_binary({**own, "parameters": {"binary_data_output": True}}, "predict")
    assert not wants_binary({"outputs": [{"name": "predict"}]}, "predict")
    assert not wants_binary([], "predict")
