"""Registering real model files of every flavor; verifying artifacts on every load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlops import (
    Client,
    IntegrityError,
    InvalidInput,
    NotFound,
    UnreadableFile,
    UntrustedArtifact,
    WrongFlavor,
)
from tests.models import N_FEATURES, training_data
from tests.snapshot import store_content


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlops.db'}"


@pytest.fixture
def local(sqlite_url: str, home: Path) -> Iterator[Client]:
    with Client(sqlite_url, home=home) as c:
        yield c


@pytest.mark.parametrize(
    ("key", "flavor", "trust", "kind"),
    [
        ("joblib", "sklearn", True, "classification"),
        ("regression", "sklearn", True, "regression"),
        ("skops", "skops", False, "classification"),
        ("onnx", "onnx", False, "classification"),
        ("mlflow", "mlflow", True, "unknown"),
    ],
)
def test_each_flavor_is_detected_with_its_signature(
    local: Client, model_files: dict[str, Path], key: str, flavor: str, trust: bool, kind: str
) -> None:
    version = local.register("m", model_files[key], trust=trust)
    assert version.version == 1
    assert version.flavor == flavor
    assert version.signature["n_features"] == N_FEATURES
    assert version.signature["output_kind"] == kind
    assert len(version.artifact_sha256) == 64
    if kind == "classification" and flavor != "onnx":
        assert version.signature["classes"] == [0, 1]


def test_loaded_versions_predict(local: Client, model_files: dict[str, Path]) -> None:
    x, _ = training_data()
    local.register("m", model_files["joblib"], trust=True)
    local.register("m", model_files["skops"])
    local.register("m", model_files["onnx"])
    local.register("m", model_files["mlflow"], trust=True)
    assert local.load("m:1").predict(x[:3]).shape == (3,)
    assert local.load("m:2").predict(x[:3]).shape == (3,)
    session = local.load("m:3")
    labels = session.run(None, {session.get_inputs()[0].name: x[:3].astype(np.float32)})[0]
    assert labels.shape == (3,)
    assert np.asarray(local.load("m:4").predict(x[:3])).shape == (3,)


def test_versions_count_up_per_model_and_are_listed(
    local: Client, model_files: dict[str, Path]
) -> None:
    assert local.register("a", model_files["skops"]).version == 1
    assert local.register("a", model_files["onnx"]).version == 2
    assert local.register("b", model_files["onnx"]).version == 1
    summaries = {s.name: s for s in local.models()}
    assert (summaries["a"].latest_version, summaries["a"].versions) == (2, 2)
    assert [v.version for v in local.versions("a")] == [2, 1]
    with pytest.raises(NotFound, match="'c'"):
        local.versions("c")


def test_same_content_is_stored_once(
    local: Client, model_files: dict[str, Path], home: Path
) -> None:
    one = local.register("a", model_files["skops"])
    two = local.register("b", model_files["skops"])
    assert one.artifact_sha256 == two.artifact_sha256
    assert len(list((home / "artifacts" / "blobs").rglob("*"))) == 2  # one folder, one blob


def test_pickle_needs_trust_and_nothing_is_written(
    local: Client, sqlite_url: str, home: Path, model_files: dict[str, Path]
) -> None:
    local.register("m", model_files["skops"])
    before = store_content(sqlite_url, home)
    for key in ("joblib", "mlflow"):
        with pytest.raises(UntrustedArtifact, match="--trust"):
            local.register("m", model_files[key])
    assert store_content(sqlite_url, home) == before


def test_trust_setting_from_the_environment(
    sqlite_url: str, home: Path, model_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_TRUST", "1")
    with Client(sqlite_url, home=home) as c:
        assert c.register("m", model_files["joblib"]).trusted


@pytest.mark.parametrize(
    ("key", "flavor", "error", "message"),
    [
        ("text", None, WrongFlavor, "not a model file"),
        ("empty_dir", None, WrongFlavor, "without an MLmodel"),
        ("skops", "onnx", WrongFlavor, "is a skops artifact, not onnx"),
        ("onnx", "pytorch", WrongFlavor, "unknown flavor"),
        ("missing", None, UnreadableFile, "does not exist"),
    ],
)
def test_bad_files_are_refused_and_change_nothing(
    local: Client,
    sqlite_url: str,
    home: Path,
    model_files: dict[str, Path],
    tmp_path: Path,
    key: str,
    flavor: str | None,
    error: type[Exception],
    message: str,
) -> None:
    local.register("m", model_files["onnx"])
    before = store_content(sqlite_url, home)
    path = model_files.get(key, tmp_path / "missing.joblib")
    with pytest.raises(error, match=message):
        local.register("m", path, flavor=flavor, trust=True)
    assert store_content(sqlite_url, home) == before


def test_a_truncated_model_file_is_refused(
    local: Client, model_files: dict[str, Path], tmp_path: Path
) -> None:
    cut = tmp_path / "cut.joblib"
    cut.write_bytes(model_files["joblib"].read_bytes()[:200])
    with pytest.raises(WrongFlavor, match="could not be loaded"):
        local.register("m", cut, trust=True)


def test_sample_gives_feature_names_and_example_rows(
    local: Client, model_files: dict[str, Path]
) -> None:
    version = local.register(
        "m", model_files["joblib"], trust=True, sample=model_files["sample_csv"]
    )
    features = [f["name"] for f in version.signature["features"]]
    assert features == [f"f{i}" for i in range(N_FEATURES)]
    assert len(version.signature["example"]) == 4
    json_sample = local.register("m", model_files["onnx"], sample=model_files["sample_json"])
    assert len(json_sample.signature["example"]) == 4


def test_a_sample_of_the_wrong_width_is_refused(
    local: Client, model_files: dict[str, Path]
) -> None:
    with pytest.raises(InvalidInput, match="takes 6 features but the sample rows have 2"):
        local.register("m", model_files["skops"], sample=model_files["sample_wrong"])


def test_tampered_or_truncated_artifacts_are_refused_on_load(
    local: Client, model_files: dict[str, Path], home: Path
) -> None:
    version = local.register("m", model_files["skops"])
    blob = home / "artifacts" / "blobs" / version.artifact_sha256[:2] / version.artifact_sha256
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="corrupt"):
        local.load("m:1")
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(IntegrityError, match="corrupt"):
        local.load("m:1")
    blob.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        local.load("m:1")


def test_mlflow_folders_are_verified_file_by_file(
    local: Client, model_files: dict[str, Path], home: Path
) -> None:
    version = local.register("m", model_files["mlflow"], trust=True)
    tree = home / "artifacts" / "trees" / version.artifact_sha256
    (tree / "extra.py").write_text("print('injected')\n")
    with pytest.raises(IntegrityError, match=r"extra\.py"):
        local.load("m:1")
    (tree / "extra.py").unlink()
    (tree / "MLmodel").write_text((tree / "MLmodel").read_text() + "\n# edited\n")
    with pytest.raises(IntegrityError, match="MLmodel"):
        local.load("m:1")
