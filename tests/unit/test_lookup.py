"""A lookup stage: what it answers for a batch, and where it may sit in a pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops.core.components import Stage, component_rank, pipeline_problem, unread_resource
from mlops.core.lookup import FeaturesMissing, LookupSpec, normal_key
from mlops.core.signature import Signature, TensorSpec
from mlops.registry.params import parse_params

SPEC = LookupSpec(
    resource="features",
    table="customers",
    key="customer_id",
    columns=("income", "region"),
    inputs=("customer_id", "amount"),
)


def named(*names: str) -> Signature:
    return Signature(
        inputs=(TensorSpec("input", "float64", (-1, len(names))),),
        features=tuple(TensorSpec(n, "float64") for n in names),
        output_kind="transform",
    )


def test_a_lookup_joins_the_columns_read_to_the_request_fields() -> None:
    rows = np.array([[7, 10.5], [3.0, 2.0], [7, 1.0]], dtype=object)
    assert SPEC.keys(rows) == [7, 3]
    found = {7: (50_000.0, "north"), 3: (20_000.0, "east")}
    out = SPEC.arrange(rows, found, SPEC.outputs, "customers")
    assert SPEC.outputs == ("amount", "income", "region")
    assert out.tolist() == [
        [10.5, 50_000.0, "north"],
        [2.0, 20_000.0, "east"],
        [1.0, 50_000.0, "north"],
    ]
    reordered = SPEC.arrange(rows[:1], found, ("region", "amount"), "customers")
    assert reordered.tolist() == [["north", 10.5]]


def test_numbers_alone_come_out_as_floats_and_a_missing_key_as_nan_or_an_error() -> None:
    rows = np.array([[1, 2.0], [9, 3.0]], dtype=object)
    found = {1: (10.0, 4)}
    with pytest.raises(FeaturesMissing, match="customers has no row with customer_id = 9"):
        SPEC.arrange(rows, found, SPEC.outputs, "customers")
    lenient = LookupSpec(**{**SPEC.__dict__, "missing": "nan"})
    out = lenient.arrange(rows, found, SPEC.outputs, "customers")
    assert out.dtype == np.float64
    assert out[0].tolist() == [2.0, 10.0, 4.0]
    assert out[1, 0] == 3.0
    assert math.isnan(out[1, 1])
    assert math.isnan(out[1, 2])


def test_keys_sent_as_floats_are_the_integer_keys() -> None:
    assert normal_key(np.float64(42.0)) == 42
    assert isinstance(normal_key(42.0), int)
    assert normal_key(4.5) == 4.5
    assert normal_key("a") == "a"


def test_a_lookup_runs_first_and_feeds_what_the_next_stage_names() -> None:
    lookup = Stage("lookup", "feats:1", SPEC.signature())
    assert component_rank("lookup") < component_rank("preprocessor")
    pre = Stage("preprocessor", "prep:1", named("amount", "income", "region"))
    assert pipeline_problem([pre, lookup]) is None
    wider = Stage("preprocessor", "prep:2", named("amount", "income", "tenure"))
    problem = pipeline_problem([lookup, wider])
    assert problem is not None
    assert "gives no column 'tenure'" in problem
    misplaced = Stage("preprocessor", "feats:1", SPEC.signature())
    problem = pipeline_problem([misplaced])
    assert problem is not None
    assert "must be the component named 'lookup'" in problem
    unnamed = Stage("model", "m:1", Signature(inputs=(TensorSpec("x", "float64", (-1, 2)),)))
    problem = pipeline_problem([lookup, unnamed])
    assert problem is not None
    assert "it gives 3 columns and the next stage takes 2" in problem
    assert unread_resource([lookup, pre], {"features": "postgresql"}) is None
    missing = unread_resource([lookup, pre], {"other": "sqlite"})
    assert missing is not None
    assert "reads the data resource 'features'" in missing
    folder = unread_resource([lookup, pre], {"features": "directory"})
    assert folder is not None
    assert "which is a directory, not an SQLite or PostgreSQL database" in folder


def test_a_lookup_file_is_read_without_running_code() -> None:
    data = b"lookup:\n  resource: features\n  table: customers\n  key: customer_id\n"
    data += b"  columns: [income]\n"
    spec = parse_params(data, "f.yaml")
    assert isinstance(spec, LookupSpec)
    assert spec.inputs == ("customer_id",)
    assert spec.missing == "error"
    assert spec.signature().reads == "features"
    assert Signature.from_dict(spec.signature().to_dict()) == spec.signature()
