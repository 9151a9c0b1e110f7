"""mlops: a release controller for machine-learning models."""

import typing as _typing

if _typing.TYPE_CHECKING:
    from mlops.client import Client
    from mlops.core.measure import Measurements
    from mlops.core.refs import ComponentRef
    from mlops.core.routing import Split
    from mlops.errors import (
        AccessDenied,
        BadKey,
        BadReference,
        ConcurrentUpdate,
        Conflict,
        DeliveryFailed,
        DependencyFailed,
        DocumentRefused,
        FeaturesMissing,
        Forbidden,
        IntegrityError,
        InvalidInput,
        InvalidKey,
        LeaseLost,
        LookupFailed,
        MigrationFailed,
        MlopsError,
        NoRollbackTarget,
        NotADocument,
        NotFound,
        NotPlainFolder,
        Overloaded,
        PayloadError,
        Quarantined,
        RemoteFailed,
        RemoteTimedOut,
        RestoreFailed,
        SnapshotCorrupt,
        SnapshotDeleteFailed,
        SnapshotFailed,
        SnapshotMissing,
        StoreUnavailable,
        TooManyAttempts,
        Unauthenticated,
        UnknownKey,
        UnreadableFile,
        UnsupportedResource,
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
    "AccessDenied",
    "BadKey",
    "BadReference",
    "Client",
    "ComponentRef",
    "ConcurrentUpdate",
    "Conflict",
    "DeliveryFailed",
    "DependencyFailed",
    "DeploymentStatus",
    "DocumentRefused",
    "Event",
    "FeaturesMissing",
    "Forbidden",
    "IntegrityError",
    "InvalidInput",
    "InvalidKey",
    "LeaseLost",
    "LookupFailed",
    "Measurements",
    "MigrationFailed",
    "MlopsError",
    "ModelSummary",
    "ModelVersion",
    "NoRollbackTarget",
    "NotADocument",
    "NotFound",
    "NotPlainFolder",
    "Overloaded",
    "PayloadError",
    "Quarantined",
    "ReleaseRecord",
    "ReleaseResult",
    "RemoteFailed",
    "RemoteTimedOut",
    "RestoreFailed",
    "SnapshotCorrupt",
    "SnapshotDeleteFailed",
    "SnapshotFailed",
    "SnapshotMissing",
    "Split",
    "StoreUnavailable",
    "TooManyAttempts",
    "Unauthenticated",
    "UnknownKey",
    "UnreadableFile",
    "UnsupportedResource",
    "UntrustedArtifact",
    "WrongFlavor",
    "__version__",
]


_LAZY = {
    "Client": "mlops.client",
    "Measurements": "mlops.core.measure",
    "ComponentRef": "mlops.core.refs",
    "Split": "mlops.core.routing",
    "DeploymentStatus": "mlops.records",
    "Event": "mlops.records",
    "ModelSummary": "mlops.records",
    "ModelVersion": "mlops.records",
    "ReleaseRecord": "mlops.records",
    "ReleaseResult": "mlops.records",
}


def __getattr__(name: str) -> _typing.Any:
    """Importing `mlops` stays light: each name is imported at its first use (PEP 562);
    a local store's libraries load when a `Client` opens one."""
    import importlib

    module = _LAZY.get(name) or ("mlops.errors" if name in __all__ else None)
    if module is None:
        raise AttributeError(f"module 'mlops' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
