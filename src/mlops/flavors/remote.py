"""The `remote` flavor: a version served by an existing V2 model server (MLServer, Triton,
KServe), registered from a file that says where (`mlops.core.remote`). Its artifact is that
file; loading it makes a client (`v2client`) and runs no code; predicting calls the server.

Where it may be called from is the operator's: `MLOPS_REMOTE_HOSTS` lists the servers, and is
checked when a version is registered (before the server is asked anything) and again in
every process that loads it. Its signature is the server's own metadata, checked for
readiness first; failures, timeouts and retries of the server are the version's errors.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlops.core.payload import NUMPY_TO_V2, V2_DTYPES
from mlops.core.remote import (
    ALLOW_ENV,
    RemoteSpec,
    is_remote_spec,
    parse_allow_list,
    parse_remote,
)
from mlops.core.signature import Signature, TensorSpec
from mlops.errors import InvalidInput, RemoteFailed
from mlops.flavors.base import Artifact, Stage, as_array, file_bytes, small_file
from mlops.flavors.v2client import Tensor, Transport, transport
from mlops.registry.params import MAX_BYTES, read_mapping
from mlops.registry.signatures import merge_sample

MAX_TENSORS = 1024
"""Inputs or outputs a remote model may declare."""
_FEEDS = {**NUMPY_TO_V2, "string": "BYTES"}
"""Signature dtypes as V2 datatypes."""
DTYPES = {datatype: dtype for dtype, datatype in _FEEDS.items()}
"""V2 datatypes as signatures name them."""


class RemoteModel:
    """A loaded remote version: where it is, its client, and how its tensors are named."""

    def __init__(self, spec: RemoteSpec, client: Transport) -> None:
        self.spec = spec
        self.client = client

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at exit, the client's libraries may be gone
            self.client.close()


class RemoteFlavor:
    name = "remote"
    expected = "a remote version's file (JSON or YAML: remote: {url, model, …})"

    def detect(self, path: Path, *, asked: bool = False) -> bool:
        data = small_file(path, MAX_BYTES)
        if data is None:
            return False
        mapping = read_mapping(data, str(path))
        if asked or (mapping is not None and is_remote_spec(mapping)):
            parse_remote(mapping, str(path))  # a broken one says why, not "no flavor"
            return True
        return False

    def load(self, artifact: Artifact) -> RemoteModel:
        spec = spec_of(artifact)
        token = None
        if spec.token_env is not None:
            token = os.environ.get(spec.token_env)
            if not token:
                raise InvalidInput(
                    f"{artifact.what}: its token is read from {spec.token_env}, which is not set"
                )
        return RemoteModel(spec, transport(spec, token))

    def signature(self, artifact: Artifact, sample: Signature | None) -> Signature:
        model = self.load(artifact)
        spec = model.spec
        if not model.client.ready():
            raise RemoteFailed(f"{artifact.what}: {spec.where} is not ready")
        own = from_metadata(model.client.metadata(), spec, artifact.what)
        signature = merge_sample(own, sample, artifact.what)
        if signature.example:
            rows = np.asarray(signature.example, dtype=object)
            self.predict(model, rows, "predict", signature, artifact.what)
        return signature

    def predict(
        self, model: Any, rows: np.ndarray, stage: Stage, signature: Signature, label: str
    ) -> np.ndarray:
        remote: RemoteModel = model
        spec = remote.spec
        wanted = _output(spec, signature, stage, label)
        answers = remote.client.infer(_inputs(rows, signature), [wanted] if wanted else [])
        if wanted is None:
            if not answers:
                raise RemoteFailed(f"{label}: {spec.where} answered no output")
            out = next(iter(answers.values()))
        elif wanted in answers:
            out = answers[wanted]
        else:
            raise RemoteFailed(f"{label}: {spec.where} answered no output {wanted!r}")
        if out.ndim == 0 or out.shape[0] != rows.shape[0]:
            raise RemoteFailed(
                f"{label}: {spec.where} answered {out.shape[0] if out.ndim else 0} rows for "
                f"{rows.shape[0]}"
            )
        return as_array(out, columns=stage != "predict")


def spec_of(artifact: Artifact) -> RemoteSpec:
    """The spec a remote version's file holds, if its server is allowed here."""
    mapping = read_mapping(file_bytes(artifact, RemoteFlavor.name), artifact.what)
    spec = parse_remote(mapping, artifact.what)
    parse_allow_list(os.environ.get(ALLOW_ENV)).check(spec, artifact.what)
    return spec


def from_metadata(metadata: dict[str, Any], spec: RemoteSpec, what: str) -> Signature:
    """A remote model's signature, from its V2 metadata."""
    inputs = _tensors(metadata.get("inputs"), "inputs", what)
    outputs = _tensors(metadata.get("outputs"), "outputs", what)
    if not inputs:
        raise InvalidInput(
            f"{what}: {spec.where} declares no inputs in its metadata: declare them on the "
            "server (MLServer: 'inputs' in model-settings.json; Triton: the model's config)"
        )
    names = {o.name for o in outputs}
    for wanted in (spec.predict_output, spec.probability_output):
        if wanted is not None and outputs and wanted not in names:
            raise InvalidInput(f"{what}: {spec.where} declares no output {wanted!r}")
    return Signature(
        inputs=inputs,
        outputs=outputs,
        output_kind=spec.kind or _kind(outputs, spec),
        source="remote",
    )


def _tensors(found: Any, field: str, what: str) -> tuple[TensorSpec, ...]:
    if found is None:
        return ()
    if not isinstance(found, list) or len(found) > MAX_TENSORS:
        raise RemoteFailed(f"{what}: the metadata's {field} is not a list of tensors")
    specs = []
    for tensor in found:
        if not isinstance(tensor, dict):
            raise RemoteFailed(f"{what}: the metadata's {field} is not a list of tensors")
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if (
            not isinstance(name, str)
            or not 0 < len(name) <= 128
            or not name.isprintable()
            or datatype not in DTYPES
            or not isinstance(shape, list)
            or not 0 < len(shape) <= 8
            or not all(type(d) is int and -1 <= d < 2**31 for d in shape)
        ):
            raise RemoteFailed(
                f"{what}: the metadata's {field} holds a tensor mlops cannot use: "
                f"{str(tensor)[:120]}"
            )
        specs.append(TensorSpec(name, DTYPES[datatype], tuple(shape)))
    return tuple(specs)


def _kind(outputs: tuple[TensorSpec, ...], spec: RemoteSpec) -> str:
    if spec.probability_output or any("prob" in o.name.lower() for o in outputs):
        return "classification"
    main = _named(outputs, spec.predict_output) or (outputs[0] if outputs else None)
    if main is None:
        return "unknown"
    return "regression" if main.dtype.startswith("float") else "classification"


def _named(outputs: tuple[TensorSpec, ...], name: str | None) -> TensorSpec | None:
    return next((o for o in outputs if o.name == name), None)


def _output(spec: RemoteSpec, signature: Signature, stage: Stage, label: str) -> str | None:
    """The output to ask for: the probabilities for `predict_proba`, else the prediction (the
    spec's, `predict` when the server declares it, else its first output)."""
    names = [o.name for o in signature.outputs]
    if stage == "predict_proba":
        found = spec.probability_output or next((n for n in names if "prob" in n.lower()), None)
        if found is None:
            raise TypeError(f"{label} has no probability output for a threshold")
        return found
    if spec.predict_output:
        return spec.predict_output
    if "predict" in names:
        return "predict"
    return names[0] if names else None


def _inputs(rows: np.ndarray, signature: Signature) -> list[Tensor]:
    """The rows as the remote takes them: one tensor of all columns, or one per column."""
    specs = signature.inputs
    if len(specs) == 1:
        return [_tensor(specs[0], rows)]
    return [_tensor(spec, rows[:, i : i + 1]) for i, spec in enumerate(specs)]


def _tensor(spec: TensorSpec, values: np.ndarray) -> Tensor:
    datatype = _FEEDS.get(spec.dtype, "FP64")
    if len(spec.shape) == 1 and values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if datatype == "BYTES":
        return Tensor(spec.name, datatype, values.astype(object))
    try:
        return Tensor(spec.name, datatype, values.astype(V2_DTYPES[datatype]))
    except (TypeError, ValueError):
        raise InvalidInput(f"inputs[{spec.name}]: values are not {datatype}") from None
