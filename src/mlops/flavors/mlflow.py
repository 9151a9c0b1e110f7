"""The `mlflow` flavor: an MLflow model folder, run through its `python_function` (pyfunc).
Loading it runs code from the folder, so it needs --trust; its signature comes from its MLmodel
file, without loading it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlops.core.signature import Signature, TensorSpec
from mlops.documents import NotADocument, load_json, load_yaml, read_bytes
from mlops.errors import DependencyFailed, InvalidInput, UnreadableFile, WrongFlavor
from mlops.flavors import estimator
from mlops.flavors.base import Artifact, Stage, dims, require_trust
from mlops.registry.signatures import common_dtype, merge_sample

DTYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "string",
    "binary": "bytes",
    "datetime": "datetime64",
}


class MlflowFlavor:
    name = "mlflow"
    expected = "an MLflow model folder"

    def detect(self, path: Path, *, asked: bool = False) -> bool:
        if not path.is_dir():
            return False
        if not (path / "MLmodel").is_file():
            raise WrongFlavor(f"{path} is a folder without an MLmodel file: not an MLflow model")
        read_mlmodel(path)
        return True

    def load(self, artifact: Artifact) -> Any:
        folder = _folder(artifact)
        require_trust(self.name, artifact)
        try:
            import mlflow.pyfunc
        except ImportError:
            raise DependencyFailed(
                f"{artifact.what} is an MLflow model: install mlflow to load it "
                "(pip install 'mlops[mlflow]')"
            ) from None
        try:
            return mlflow.pyfunc.load_model(str(folder))
        except Exception as exc:
            raise WrongFlavor(
                f"{artifact.what} could not be loaded by mlflow.pyfunc: {exc}"
            ) from None

    def signature(self, artifact: Artifact, sample: Signature | None) -> Signature:
        folder = _folder(artifact)
        require_trust(self.name, artifact)
        declared = from_mlmodel(read_mlmodel(folder), f"the MLmodel file {folder / 'MLmodel'}")
        return merge_sample(declared, sample, artifact.what)

    def predict(
        self, model: Any, rows: np.ndarray, stage: Stage, signature: Signature, label: str
    ) -> np.ndarray:
        names = estimator.own_names(model)
        if names is None and signature.features:
            names = [spec.name for spec in signature.features]
        return estimator.predict(model, rows, stage, label, names)


def _folder(artifact: Artifact) -> Path:
    if artifact.folder is None:
        raise WrongFlavor(f"{artifact.what}: an MLflow model is a folder, not a single file")
    return artifact.folder


def read_mlmodel(folder: Path) -> dict[str, object]:
    mlmodel = folder / "MLmodel"
    what = f"the MLmodel file {mlmodel}"
    try:
        data = load_yaml(read_bytes(mlmodel, what), what)
    except (UnreadableFile, NotADocument) as exc:
        raise WrongFlavor(f"{mlmodel} is not a readable MLmodel file: {exc.message}") from None
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise WrongFlavor(f"{mlmodel} has no 'flavors' section: not an MLflow model")
    if "python_function" not in data["flavors"]:
        raise WrongFlavor(f"{mlmodel} has no python_function flavor: mlops cannot serve it")
    return data


def _specs(raw: Any, what: str) -> tuple[TensorSpec, ...]:
    specs = load_json(raw, what) if isinstance(raw, str) else (raw or [])
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise InvalidInput(f"{what} must be a list of column or tensor specs")
    out = []
    for index, spec in enumerate(specs):
        name = str(spec.get("name", f"input_{index}"))
        if spec.get("type") == "tensor":
            tensor = spec.get("tensor-spec", {})
            if not isinstance(tensor, dict):
                raise InvalidInput(f"{what}: {name}: tensor-spec must be a mapping")
            out.append(
                TensorSpec(name, str(tensor.get("dtype", "unknown")), dims(tensor.get("shape")))
            )
        else:
            out.append(TensorSpec(name, DTYPES.get(str(spec.get("type")), str(spec.get("type")))))
    return tuple(out)


def from_mlmodel(mlmodel: dict[str, Any], what: str = "the MLmodel file") -> Signature | None:
    """The signature an MLmodel file declares, or None when it declares none."""
    raw = mlmodel.get("signature")
    if not isinstance(raw, dict) or not raw.get("inputs"):
        return None
    inputs = _specs(raw["inputs"], f"{what}: signature.inputs")
    outputs = _specs(raw.get("outputs"), f"{what}: signature.outputs")
    columns = all(spec.shape == (-1,) for spec in inputs)
    return Signature(
        inputs=inputs
        if not columns
        else (TensorSpec("input", common_dtype(inputs), (-1, len(inputs))),),
        outputs=outputs,
        features=inputs if columns else (),
        output_kind="unknown",
        source="mlflow",
    )
