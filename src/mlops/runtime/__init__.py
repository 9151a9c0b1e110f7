"""The model runtime: loaded versions, release pipelines and micro-batching, shared by the
gateway (which serves them) and the controller (which checks a candidate before it gets
traffic). It imports neither of them."""

from mlops.runtime.batching import MicroBatcher, Overloaded
from mlops.runtime.pipeline import Pipeline, make_pipeline
from mlops.runtime.version import LoadedVersion

__all__ = ["LoadedVersion", "MicroBatcher", "Overloaded", "Pipeline", "make_pipeline"]
