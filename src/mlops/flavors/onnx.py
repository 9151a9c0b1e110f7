"""The `onnx` flavor: an ONNX graph run by onnxruntime on the CPU. Loading it runs no code from
the file."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np

from mlops.core.signature import Signature, TensorSpec
from mlops.errors import InvalidInput, WrongFlavor
from mlops.flavors.base import Artifact, Stage, as_array, dims, file_bytes, head
from mlops.registry.signatures import merge_sample

DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(string)": "string",
    "tensor(bool)": "bool",
}
_FEEDS = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


class _Ports:
    """A session's inputs (name, dtype fed) and its outputs, read once per session."""

    def __init__(self, session: Any) -> None:
        self.inputs = [(i.name, _FEEDS.get(i.type, np.float32)) for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        self.output = outputs[0]
        self.probabilities = next((o for o in outputs if "prob" in o.lower()), None)


class OnnxFlavor:
    name = "onnx"
    expected = "ONNX file"

    def __init__(self) -> None:
        self._ports: weakref.WeakKeyDictionary[Any, _Ports] = weakref.WeakKeyDictionary()

    def detect(self, path: Path, *, asked: bool = False) -> bool:
        start = head(path)
        if not start or start[0] != 0x08:
            return False
        import onnx
        from google.protobuf.message import DecodeError

        try:
            model = onnx.load_model(str(path), load_external_data=False)
        except (DecodeError, ValueError, RuntimeError, OSError):
            return False
        return bool(model.ir_version > 0 and len(model.graph.node) > 0)

    def load(self, artifact: Artifact) -> Any:
        import onnxruntime as ort

        data = file_bytes(artifact, self.name)
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            return ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise WrongFlavor(
                f"{artifact.what} could not be loaded by onnxruntime: {exc}"
            ) from None

    def signature(self, artifact: Artifact, sample: Signature | None) -> Signature:
        session = self.load(artifact)
        signature = merge_sample(from_session(session), sample, artifact.what)
        if signature.example:
            spec = signature.inputs[0]
            dtype = {"float32": np.float32, "float64": np.float64, "int64": np.int64}.get(
                spec.dtype, np.float32
            )
            rows = np.asarray(signature.example, dtype=object)
            try:
                session.run(None, {spec.name: rows.astype(dtype)})
            except Exception as exc:
                raise InvalidInput(
                    f"{artifact.what} failed to predict on the sample rows: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        return signature

    def predict(
        self, model: Any, rows: np.ndarray, stage: Stage, signature: Signature, label: str
    ) -> np.ndarray:
        ports = self._ports.get(model)
        if ports is None:
            ports = self._ports.setdefault(model, _Ports(model))
        if len(ports.inputs) == 1:
            name, dtype = ports.inputs[0]
            feeds = {name: rows.astype(dtype, copy=False)}
        else:
            feeds = {
                name: rows[:, i : i + 1].astype(dtype, copy=False)
                for i, (name, dtype) in enumerate(ports.inputs)
            }
        if stage == "predict_proba":
            if ports.probabilities is None:
                raise TypeError(f"{label} has no probability output for a threshold")
            out = model.run([ports.probabilities], feeds)[0]
            if not isinstance(out, np.ndarray):
                raise TypeError(
                    f"{label} gives probabilities as a map (ZipMap); export it with "
                    "zipmap=False for a threshold"
                )
            return as_array(out, columns=True)
        return as_array(model.run([ports.output], feeds)[0], columns=stage == "transform")


def from_session(session: Any) -> Signature:
    """The signature an onnxruntime session declares."""
    inputs = tuple(
        TensorSpec(i.name, DTYPES.get(i.type, i.type), dims(i.shape)) for i in session.get_inputs()
    )
    outputs = tuple(
        TensorSpec(o.name, DTYPES.get(o.type, o.type), dims(o.shape)) for o in session.get_outputs()
    )
    if any("label" in o.name.lower() for o in outputs):
        kind = "classification"
    elif len(outputs) == 1 and outputs[0].dtype.startswith("float"):
        kind = "regression"
    else:
        kind = "unknown"
    return Signature(inputs=inputs, outputs=outputs, output_kind=kind)
