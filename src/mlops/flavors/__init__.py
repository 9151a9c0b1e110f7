"""Model flavors: one module per kind of artifact, each a `ModelFlavor` (see `base`).

`FLAVORS` is the registry the product uses; whatever loads or runs versions takes a `Flavors`
mapping, this one by default. Adding a flavor is one module here and one line below.
"""

from __future__ import annotations

from types import MappingProxyType

from mlops.flavors.base import Artifact, Flavors, ModelFlavor, Stage
from mlops.flavors.mlflow import MlflowFlavor
from mlops.flavors.onnx import OnnxFlavor
from mlops.flavors.params import ParamsFlavor
from mlops.flavors.remote import RemoteFlavor
from mlops.flavors.sklearn import SklearnFlavor
from mlops.flavors.skops import SkopsFlavor

__all__ = ["FLAVORS", "Artifact", "Flavors", "ModelFlavor", "Stage"]

FLAVORS: Flavors = MappingProxyType(
    {
        flavor.name: flavor
        for flavor in (
            SklearnFlavor(),
            SkopsFlavor(),
            OnnxFlavor(),
            MlflowFlavor(),
            RemoteFlavor(),
            ParamsFlavor(),
        )
    }
)
"""The flavors mlops ships, in the order detection tries them (params last: any small JSON or
YAML file could look like one)."""
