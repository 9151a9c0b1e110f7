"""mlops: a release controller for machine-learning models."""

from mlops.client import Client
from mlops.core.measure import Measurements
from mlops.core.refs import ComponentRef
from mlops.core.routing import Split
from mlops.errors import (
    BadReference,
    ConcurrentUpdate,
    Conflict,
    DependencyFailed,
    IntegrityError,
    InvalidInput,
    MlopsError,
    NoRollbackTarget,
    NotFound,
    Quarantined,
    StoreUnavailable,
    UnreadableFile,
    UntrustedArtifact,
    WrongFlavor,
)
from mlops.records import (
    DeploymentStatus,
    Event,
    ModelSummary,
    ModelVersion,
    ReleaseRecord,
    ReleaseResult,
)

__version__ = "0.1.0"

__all__ = [
    "BadReference",
    "Client",
    "ComponentRef",
    "ConcurrentUpdate",
    "Conflict",
    "DependencyFailed",
    "DeploymentStatus",
    "Event",
    "IntegrityError",
    "InvalidInput",
    "Measurements",
    "MlopsError",
    "ModelSummary",
    "ModelVersion",
    "NoRollbackTarget",
    "NotFound",
    "Quarantined",
    "ReleaseRecord",
    "ReleaseResult",
    "Split",
    "StoreUnavailable",
    "UnreadableFile",
    "UntrustedArtifact",
    "WrongFlavor",
    "__version__",
]
