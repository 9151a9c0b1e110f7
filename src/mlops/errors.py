"""The error tree: every exception mlops defines. Each error carries the CLI exit code and the
HTTP status it maps to.

    MlopsError                      exit 1, HTTP 500
    ├── NotFound                    exit 3, HTTP 404
    │   ├── NoRollbackTarget        exit 3, HTTP 404
    │   └── SnapshotMissing         exit 3, HTTP 404
    ├── Conflict                    exit 4, HTTP 409
    │   ├── Quarantined             exit 4, HTTP 409
    │   ├── ConcurrentUpdate        exit 4, HTTP 409
    │   └── LeaseLost               exit 4, HTTP 409
    ├── InvalidInput                exit 5, HTTP 400
    │   ├── BadReference            exit 5, HTTP 400
    │   ├── UnreadableFile          exit 5, HTTP 400
    │   ├── WrongFlavor             exit 5, HTTP 400
    │   ├── IntegrityError          exit 5, HTTP 400
    │   │   └── SnapshotCorrupt     exit 5, HTTP 400
    │   ├── UntrustedArtifact       exit 5, HTTP 400
    │   ├── UnsupportedResource     exit 5, HTTP 400
    │   ├── NotPlainFolder          exit 5, HTTP 400   also a ValueError
    │   ├── DocumentRefused         exit 5, HTTP 400
    │   ├── NotADocument            exit 5, HTTP 400
    │   ├── MigrationFailed         exit 5, HTTP 400
    │   ├── PayloadError            exit 5, HTTP 400
    │   └── UnknownKey              exit 5, HTTP 422
    │       ├── FeaturesMissing     exit 5, HTTP 422   also a LookupError
    │       └── BadKey              exit 5, HTTP 400
    │           └── InvalidKey      exit 5, HTTP 400   also a LookupError
    ├── AccessDenied                exit 7, HTTP 403
    │   ├── Unauthenticated         exit 7, HTTP 401
    │   │   └── TooManyAttempts     exit 7, HTTP 429
    │   └── Forbidden               exit 7, HTTP 403
    └── DependencyFailed            exit 6, HTTP 503
        ├── StoreUnavailable        exit 6, HTTP 503
        ├── SnapshotFailed          exit 6, HTTP 503
        ├── SnapshotDeleteFailed    exit 6, HTTP 503
        ├── RestoreFailed           exit 6, HTTP 503
        ├── DeliveryFailed          exit 6, HTTP 503
        ├── LookupFailed            exit 6, HTTP 503
        ├── Overloaded              exit 6, HTTP 503
        └── RemoteFailed            exit 6, HTTP 502
            └── RemoteTimedOut      exit 6, HTTP 504

Exit code 2 is a usage error (reported by the CLI parser); 10 means a rollout ended rolled back.
The modules that raise an error re-export it where it was defined before (`mlops.core.payload`
holds `PayloadError`, `mlops.notify` holds `DeliveryFailed`, …); it is one class either way.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BadKey",
    "BadReference",
    "ConcurrentUpdate",
    "Conflict",
    "DeliveryFailed",
    "DependencyFailed",
    "DocumentRefused",
    "FeaturesMissing",
    "Forbidden",
    "IntegrityError",
    "InvalidInput",
    "InvalidKey",
    "LeaseLost",
    "LookupFailed",
    "MigrationFailed",
    "MlopsError",
    "NoRollbackTarget",
    "NotADocument",
    "NotFound",
    "NotPlainFolder",
    "Overloaded",
    "PayloadError",
    "Quarantined",
    "RemoteFailed",
    "RemoteTimedOut",
    "RestoreFailed",
    "SnapshotCorrupt",
    "SnapshotDeleteFailed",
    "SnapshotFailed",
    "SnapshotMissing",
    "StoreUnavailable",
    "TooManyAttempts",
    "Unauthenticated",
    "UnknownKey",
    "UnreadableFile",
    "UnsupportedResource",
    "UntrustedArtifact",
    "WrongFlavor",
]

EXIT_OK = 0
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


class LeaseLost(Conflict):
    """A controller's lease passed to another (or ran out): what it was about to write is not
    written."""


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


class NotPlainFolder(InvalidInput, ValueError):
    """A folder holding something other than folders and regular files (a link, a FIFO…)."""


class BodyTooLarge(InvalidInput):
    """A request body past the limit its handler takes; the rest is left unread (HTTP 413)."""

    http_status = 413


class BodyTooSlow(InvalidInput):
    """A request body not received whole within the body timeout (HTTP 408)."""

    http_status = 408


class DocumentRefused(InvalidInput):
    """A document that parses, or would, but breaks one of the loader's limits."""


class NotADocument(InvalidInput):
    """Bytes that are not UTF-8 JSON or YAML at all."""


class MigrationFailed(InvalidInput):
    """A release's data migration raised; the data was put back as it was."""


class PayloadError(InvalidInput):
    """A request body that does not fit the protocol or the signature (HTTP 400)."""


class UnknownKey(InvalidInput):
    """A request's key is not in the lookup's table: the client's error (HTTP 422)."""

    http_status = 422


class FeaturesMissing(UnknownKey, LookupError):
    """A request's key is not in the lookup's table (and the lookup's `missing` is error)."""


class BadKey(UnknownKey):
    """A request's key is of a kind no table holds (an object, a list, 2**64): HTTP 400."""

    http_status = 400


class InvalidKey(BadKey, LookupError):
    """A request's key is of a kind no table holds: not text, nor a 64-bit whole number."""


class NotRouted(NotFound):
    """No deployment by that name, or no release of it serves the version asked for."""


class IllegalTransition(Conflict):
    """A snapshot row asked to move to a status its current one does not lead to."""


class AccessDenied(MlopsError):
    """The caller may not do this: no valid token, or one without the right role or scope."""

    exit_code = 7
    http_status = 403


class Unauthenticated(AccessDenied):
    """No token, or one that is malformed, unknown, expired or revoked (HTTP 401)."""

    http_status = 401


class TooManyAttempts(Unauthenticated):
    """Too many failed attempts from one client; it must wait `retry_after` seconds (HTTP 429)."""

    http_status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Forbidden(AccessDenied):
    """A valid token whose role, scope or deployment glob does not allow this (HTTP 403)."""


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


class DeliveryFailed(DependencyFailed):
    """A notification did not reach its receiver; the outbox will try again later.

    `retry_after` (seconds) is the receiver's own request to wait (an HTTP `Retry-After`);
    the outbox waits at least that long, within its cap.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class LookupFailed(DependencyFailed):
    """The table could not be read. The answer says only this; the cause goes to the log."""


class Overloaded(DependencyFailed):
    """The pipeline's queue is full; the client should retry later (HTTP 503)."""


class RemoteFailed(DependencyFailed):
    """A model server that serves a remote version failed, refused or could not be reached.
    The message is for the operator (it names the server); a client is told less.
    `retryable`: the server was not reached, or said it is unavailable."""

    http_status = 502

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.retryable = retryable


class RemoteTimedOut(RemoteFailed):
    """A model server that serves a remote version did not answer in time."""

    http_status = 504
