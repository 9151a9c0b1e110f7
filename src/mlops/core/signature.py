"""The input/output schema of a version: names, dtypes and shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...] = (-1,)
    """-1 stands for a dimension of any size (the batch, usually)."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(
            str(data["name"]), str(data["dtype"]), tuple(int(d) for d in data.get("shape", [-1]))
        )


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()
    features: tuple[TensorSpec, ...] = ()
    """Named columns of a tabular model, in order; empty when the model does not name them."""
    output_kind: str = "unknown"
    classes: tuple[Any, ...] = field(default=())
    source: str = "model"
    """Where the signature came from: `model`, `mlflow` (its MLmodel file) or `sample`."""
    example: tuple[tuple[Any, ...], ...] = ()
    """A few input rows that the version predicted on when it was registered."""
    allows_missing: bool = False
    """Whether the model takes missing values (null in a request, NaN to the model)."""
    input_classes: tuple[str, ...] = ()
    """The classes a label map names (as text): the model's classes it can turn into labels."""
    reads: str = ""
    """The data resource a lookup reads its feature values from."""

    @property
    def n_features(self) -> int | None:
        if self.features:
            return len(self.features)
        if len(self.inputs) == 1 and len(self.inputs[0].shape) == 2 and self.inputs[0].shape[1] > 0:
            return self.inputs[0].shape[1]
        if self.inputs and all(spec.shape in ((-1,), (-1, 1)) for spec in self.inputs):
            return len(self.inputs)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
            "features": [spec.to_dict() for spec in self.features],
            "n_features": self.n_features,
            "output_kind": self.output_kind,
            "classes": list(self.classes),
            "source": self.source,
            "example": [list(row) for row in self.example],
            "allows_missing": self.allows_missing,
            "input_classes": list(self.input_classes),
            **({"reads": self.reads} if self.reads else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            inputs=tuple(TensorSpec.from_dict(d) for d in data.get("inputs", [])),
            outputs=tuple(TensorSpec.from_dict(d) for d in data.get("outputs", [])),
            features=tuple(TensorSpec.from_dict(d) for d in data.get("features", [])),
            output_kind=str(data.get("output_kind", "unknown")),
            classes=tuple(data.get("classes", [])),
            source=str(data.get("source", "model")),
            example=tuple(tuple(row) for row in data.get("example", [])),
            allows_missing=bool(data.get("allows_missing", False)),
            input_classes=tuple(str(c) for c in data.get("input_classes", [])),
            reads=str(data.get("reads", "")),
        )

    def describe(self) -> str:
        if self.source == "lookup":
            names = ", ".join(spec.name for spec in self.outputs)
            return f"{len(self.inputs)} inputs -> {names} (from {self.reads})"
        if self.source == "params":
            head = self.inputs[0].name if self.inputs else "predictions"
            classes = f" ({len(self.classes)} classes)" if self.classes else ""
            return f"{head} -> {self.output_kind}{classes}"
        n = self.n_features
        dtypes = sorted({spec.dtype for spec in (self.features or self.inputs)})
        head = f"{n} features" if n is not None else f"{len(self.inputs)} inputs"
        kind = self.output_kind
        if self.classes:
            kind += f" ({len(self.classes)} classes)"
        return f"{head} [{', '.join(dtypes)}] -> {kind}"
