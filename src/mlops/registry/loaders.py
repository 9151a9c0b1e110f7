"""Loading a registered version's verified artifact into a model object, by its flavor.

Loaders take bytes that were already hashed (or a folder whose every file was), so what is
checked is what is loaded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mlops.errors import WrongFlavor
from mlops.flavors import FLAVORS, Artifact, Flavors, ModelFlavor
from mlops.records import ModelVersion
from mlops.registry.artifacts import ArtifactStore


def flavor_of(name: str, flavors: Flavors = FLAVORS) -> ModelFlavor:
    try:
        return flavors[name]
    except KeyError:
        raise WrongFlavor(f"unknown flavor {name!r}: choose one of {', '.join(flavors)}") from None


def load_version(
    version: ModelVersion, artifacts: ArtifactStore, what: str, flavors: Flavors = FLAVORS
) -> Any:
    """The model object of `version`, from its artifact after verifying its hash: a file's
    bytes, a folder, or (a version served elsewhere, whose kind is neither) only its source."""
    flavor = flavor_of(version.flavor, flavors)
    artifact = Artifact(what, version.trusted, source=version.source or "")
    if version.artifact_kind == "dir":
        artifact = replace(artifact, folder=artifacts.verified_dir(version.artifact_sha256))
    elif version.artifact_kind == "file":
        artifact = replace(artifact, data=artifacts.read_file(version.artifact_sha256))
    return flavor.load(artifact)
