"""mlops: a release controller for machine-learning models."""

from mlops.client import Client
from mlops.core.refs import ComponentRef
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
    "MlopsError",
    "ModelSummary",
    "ModelVersion",
    "NoRollbackTarget",
    "NotFound",
    "Quarantined",
    "ReleaseRecord",
    "ReleaseResult",
    "StoreUnavailable",
    "UnreadableFile",
    "UntrustedArtifact",
    "WrongFlavor",
    "__version__",
]
