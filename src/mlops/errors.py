"""The error tree. Each error carries the CLI exit code and the HTTP status it maps to.

    MlopsError                      exit 1, HTTP 500
    ├── NotFound                    exit 3, HTTP 404
    │   ├── NoRollbackTarget        exit 3, HTTP 404
    │   └── SnapshotMissing         exit 3, HTTP 404
    ├── Conflict                    exit 4, HTTP 409
    │   ├── Quarantined             exit 4, HTTP 409
    │   └── ConcurrentUpdate        exit 4, HTTP 409
    ├── InvalidInput                exit 5, HTTP 400
    │   ├── BadReference            exit 5, HTTP 400
    │   ├── UnreadableFile          exit 5, HTTP 400
    │   ├── WrongFlavor             exit 5, HTTP 400
    │   ├── IntegrityError          exit 5, HTTP 400
    │   │   └── SnapshotCorrupt     exit 5, HTTP 400
    │   ├── UntrustedArtifact       exit 5, HTTP 400
    │   └── UnsupportedResource     exit 5, HTTP 400
    └── DependencyFailed            exit 6, HTTP 503
        ├── StoreUnavailable        exit 6, HTTP 503
        ├── SnapshotFailed          exit 6, HTTP 503
        ├── SnapshotDeleteFailed    exit 6, HTTP 503
        └── RestoreFailed           exit 6, HTTP 503

Exit code 2 is a usage error (reported by the CLI parser); 10 means a rollout ended rolled back.
"""

from __future__ import annotations

__all__ = [
    "BadReference",
    "ConcurrentUpdate",
    "Conflict",
    "DependencyFailed",
    "IntegrityError",
    "InvalidInput",
    "MlopsError",
    "NoRollbackTarget",
    "NotFound",
    "Quarantined",
    "RestoreFailed",
    "SnapshotCorrupt",
    "SnapshotDeleteFailed",
    "SnapshotFailed",
    "SnapshotMissing",
    "StoreUnavailable",
    "UnreadableFile",
    "UnsupportedResource",
    "UntrustedArtifact",
    "WrongFlavor",
]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_ROLLED_BACK = 10


class MlopsError(Exception):
    """Base of every error mlops raises on purpose."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(MlopsError):
    """An unknown deployment, model, version or revision."""

    exit_code = 3
    http_status = 404


class NoRollbackTarget(NotFound):
    """A rollback has nothing to go back to."""


class SnapshotMissing(NotFound):
    """A data snapshot whose files are gone (deleted, expired, or never finished)."""


class Conflict(MlopsError):
    """The request is well formed but the store's state forbids it."""

    exit_code = 4
    http_status = 409


class Quarantined(Conflict):
    """A quarantined version was asked for without force."""


class ConcurrentUpdate(Conflict):
    """Another writer changed the same thing at the same time."""


class InvalidInput(MlopsError):
    """Input that can never succeed as given."""

    exit_code = 5
    http_status = 400


class BadReference(InvalidInput):
    """A malformed MODEL:VERSION, component or deployment name."""


class UnreadableFile(InvalidInput):
    """A missing or unreadable file."""


class WrongFlavor(InvalidInput):
    """A file that is not of the flavor asked for, or of no known flavor."""


class IntegrityError(InvalidInput):
    """A stored artifact whose bytes no longer match its SHA-256."""


class SnapshotCorrupt(IntegrityError):
    """A data snapshot whose bytes no longer match its checksum; it is never restored."""


class UntrustedArtifact(InvalidInput):
    """An artifact that would run code when loaded, without --trust."""


class UnsupportedResource(InvalidInput):
    """A data resource holding something its snapshot driver cannot copy back faithfully."""


class DependencyFailed(MlopsError):
    """Something outside mlops failed: a database, a server, a library."""

    exit_code = 6
    http_status = 503


class StoreUnavailable(DependencyFailed):
    """The store cannot be reached or opened."""


class SnapshotFailed(DependencyFailed):
    """A data resource could not be copied: unreachable, locked, or the copy failed."""


class RestoreFailed(DependencyFailed):
    """A restore did not complete; the resource still holds the data it held before."""


class SnapshotDeleteFailed(DependencyFailed):
    """A snapshot's files could not be removed; its row stays unexpired so a later pass retries."""
