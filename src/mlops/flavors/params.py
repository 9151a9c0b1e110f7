"""The `params` flavor: a decision threshold, a label map or a lookup, declared in a small JSON
or YAML file (mlops.registry.params). Reading one runs no code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlops.core.lookup import LookupSpec
from mlops.core.signature import Signature
from mlops.documents import read_bytes
from mlops.errors import InvalidInput
from mlops.flavors.base import Artifact, Stage, file_bytes, small_file
from mlops.registry.params import MAX_BYTES, Params, looks_like_params, parse_params


class ParamsFlavor:
    name = "params"
    expected = "a params file (JSON or YAML with a threshold or labels)"

    def detect(self, path: Path, *, asked: bool = False) -> bool:
        if not path.is_file():
            return False
        if asked:  # the reason it is not a params file is worth more than "no"
            parse_params(read_bytes(path, str(path)), str(path))
            return True
        data = small_file(path, MAX_BYTES)
        return data is not None and looks_like_params(data, str(path))

    def load(self, artifact: Artifact) -> Params | LookupSpec:
        return parse_params(file_bytes(artifact, self.name), artifact.what)

    def signature(self, artifact: Artifact, sample: Signature | None) -> Signature:
        if sample is not None:
            raise InvalidInput(f"{artifact.what} is a params file: it takes no --sample")
        return self.load(artifact).signature()

    def predict(
        self, model: Any, rows: np.ndarray, stage: Stage, signature: Signature, label: str
    ) -> np.ndarray:
        if isinstance(model, LookupSpec):
            raise LookupError(f"{label} is a lookup: it runs bound to a data resource")
        result: np.ndarray = model.apply(rows, None)
        return result
