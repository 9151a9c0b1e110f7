"""Flavors as a plug point: the registry is passed in, so a flavor that mlops does not ship
(the fake one) is detected, registered, loaded and run through a pipeline like the real ones."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mlops.errors import InvalidInput, WrongFlavor
from mlops.flavors import FLAVORS, Artifact, Flavors
from mlops.flavors.params import ParamsFlavor
from mlops.records import ModelVersion
from mlops.registry.artifacts import ArtifactStore
from mlops.registry.detection import check_flavor, detect_flavor
from mlops.registry.intake import inspect_artifact
from mlops.registry.loaders import load_version
from mlops.registry.params import parse_params
from mlops.runtime import LoadedVersion, make_pipeline
from tests.fake_flavor import FakeFlavor, FakeModel

ROWS = np.array([[1.0, 2.0], [3.0, -4.0]])


def record(
    flavor: str, signature: dict[str, object] | None = None, **extra: object
) -> ModelVersion:
    values: dict[str, object] = {
        "id": 1,
        "model": "m",
        "version": 1,
        "flavor": flavor,
        "artifact_sha256": "0" * 64,
        "artifact_kind": "file",
        "size_bytes": 0,
        "signature": signature or {"inputs": [{"name": "input", "dtype": "float64"}]},
        "tags": {},
        "source": None,
        "trusted": False,
        "status": "ready",
        "quarantine_reason": None,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "created_by": "test",
    }
    values.update(extra)
    return ModelVersion(**values)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> FakeFlavor:
    return FakeFlavor()


@pytest.fixture
def flavors(fake: FakeFlavor) -> Flavors:
    return {**FLAVORS, "fake": fake}


def test_the_shipped_flavors_in_the_order_detection_tries_them() -> None:
    assert list(FLAVORS) == ["sklearn", "skops", "onnx", "mlflow", "remote", "params"]
    assert all(name == flavor.name for name, flavor in FLAVORS.items())


def test_a_pipeline_runs_a_version_through_its_flavor(fake: FakeFlavor, flavors: Flavors) -> None:
    version = LoadedVersion(record("fake", id=7), FakeModel(2.0), flavors)
    pipeline = make_pipeline([("model", version)])
    assert pipeline(ROWS).tolist() == [6.0, -2.0]
    assert fake.calls == [("predict", 2)]
    assert pipeline.key == (7,)


def test_a_threshold_after_the_model_asks_its_flavor_for_probabilities(
    fake: FakeFlavor, flavors: Flavors
) -> None:
    model = LoadedVersion(record("fake", id=1), FakeModel(1.0, classes_=(0, 1)), flavors)
    threshold = parse_params(b'{"threshold": 0.5}', "t")
    post = LoadedVersion(
        record("params", threshold.signature().to_dict(), id=2), threshold, flavors
    )
    pipeline = make_pipeline([("postprocessor", post), ("model", model)])
    assert pipeline(ROWS).tolist() == [1, 0]
    assert fake.calls == [("predict_proba", 2)]


def test_an_unknown_flavor_is_refused_when_loaded() -> None:
    with pytest.raises(WrongFlavor, match="unknown flavor 'fake'"):
        LoadedVersion(record("fake"), FakeModel(1.0))


def test_detection_asks_each_flavor_of_the_registry(tmp_path: Path, flavors: Flavors) -> None:
    model = tmp_path / "model.fake"
    model.write_bytes(b"FAKE 3")
    assert detect_flavor(model, flavors) == "fake"
    assert check_flavor(model, "fake", flavors) == "fake"
    with pytest.raises(WrongFlavor, match="unknown flavor 'fake'"):
        check_flavor(model, "fake")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(WrongFlavor, match=r"expected .*, or a fake model file"):
        detect_flavor(other, flavors)
    with pytest.raises(WrongFlavor, match="is a fake artifact, not onnx"):
        check_flavor(model, "onnx", flavors)


def test_a_flavor_asked_for_by_name_may_say_why_the_file_is_not_one(tmp_path: Path) -> None:
    typo = tmp_path / "typo.json"
    typo.write_text('{"treshold": 0.5}')
    with pytest.raises(InvalidInput, match="unknown key 'treshold'"):
        check_flavor(typo, "params")
    with pytest.raises(WrongFlavor, match="not a model file mlops knows"):
        detect_flavor(typo)


def test_intake_takes_the_signature_from_the_flavor(tmp_path: Path, flavors: Flavors) -> None:
    model = tmp_path / "model.fake"
    model.write_bytes(b"FAKE 3")
    inspected = inspect_artifact(model, flavor=None, trusted=False, sample=None, flavors=flavors)
    assert (inspected.flavor, inspected.data) == ("fake", b"FAKE 3")
    assert inspected.signature.n_features == 2
    assert inspected.signature.output_kind == "regression"


def test_a_stored_version_is_loaded_by_its_flavor(tmp_path: Path, flavors: Flavors) -> None:
    artifacts = ArtifactStore(tmp_path)
    stored = artifacts.put_bytes(b"FAKE 2.5")
    version = record("fake", artifact_sha256=stored.sha256)
    model = load_version(version, artifacts, "m:1", flavors)
    assert model == FakeModel(2.5)


def test_a_version_without_an_artifact_loads_as_a_client(tmp_path: Path, fake: FakeFlavor) -> None:
    remote = record("fake", artifact_kind="remote", source="http://v2.example/models/m")
    client = load_version(remote, ArtifactStore(tmp_path), "m:1", {"fake": fake})
    assert client.source == "http://v2.example/models/m"
    version = LoadedVersion(record("fake"), client, {"fake": fake})
    assert version(ROWS).tolist() == [3.0, -1.0]


def test_params_flavor_refuses_a_sample_and_runs_no_lookup() -> None:
    params = ParamsFlavor()
    artifact = Artifact("t.json", trusted=False, data=b'{"threshold": 0.5}')
    signature = params.signature(artifact, None)
    with pytest.raises(InvalidInput, match="takes no --sample"):
        params.signature(artifact, signature)
    lookup = parse_params(
        b'{"lookup": {"resource": "r", "table": "t", "key": "k", "columns": ["a"]}}', "l"
    )
    with pytest.raises(LookupError, match="m:1 is a lookup"):
        params.predict(lookup, ROWS, "predict", signature, "m:1")
