"""The records that operations return. `to_dict()` gives the documented, stable JSON;
`from_dict()` reads it back (what a remote client receives), to the fields it carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops.core.refs import ComponentRef
from mlops.settings import redact


def iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def components_of(data: Mapping[str, Mapping[str, Any]]) -> dict[str, ComponentRef]:
    return {name: ComponentRef(ref["model"], ref["version"]) for name, ref in data.items()}


def components_dict(components: dict[str, ComponentRef]) -> dict[str, dict[str, Any]]:
    return {
        name: {"model": ref.model, "version": ref.version}
        for name, ref in sorted(components.items())
    }


@dataclass(frozen=True)
class ModelVersion:
    id: int
    model: str
    version: int
    flavor: str
    artifact_sha256: str
    artifact_kind: str
    size_bytes: int
    signature: dict[str, Any]
    tags: dict[str, str]
    source: str | None
    trusted: bool
    status: str
    quarantine_reason: str | None
    created_at: datetime
    created_by: str

    @property
    def ref(self) -> ComponentRef:
        return ComponentRef(self.model, self.version)

    @property
    def quarantined(self) -> bool:
        return self.status == "quarantined"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "flavor": self.flavor,
            "sha256": self.artifact_sha256,
            "size_bytes": self.size_bytes,
            "signature": self.signature,
            "tags": self.tags,
            "source": self.source,
            "trusted": self.trusted,
            "status": self.status,
            "quarantine_reason": self.quarantine_reason,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelVersion:
        return cls(
            id=0,
            model=d["model"],
            version=d["version"],
            flavor=d["flavor"],
            artifact_sha256=d["sha256"],
            artifact_kind="",
            size_bytes=d["size_bytes"],
            signature=d["signature"],
            tags=d["tags"],
            source=d["source"],
            trusted=d["trusted"],
            status=d["status"],
            quarantine_reason=d["quarantine_reason"],
            created_at=at(d["created_at"]),
            created_by=d["created_by"],
        )


@dataclass(frozen=True)
class ModelSummary:
    name: str
    latest_version: int
    versions: int
    quarantined: int
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "latest_version": self.latest_version,
            "versions": self.versions,
            "quarantined": self.quarantined,
            "created_at": iso(self.created_at),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSummary:
        return cls(
            d["model"], d["latest_version"], d["versions"], d["quarantined"], at(d["created_at"])
        )


@dataclass(frozen=True)
class Deployment:
    id: int
    name: str
    latest_revision: int
    stable_revision: int | None
    candidate_revision: int | None
    phase: str
    data_policy: str
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    routes: dict[str, Any] | None = None
    """The traffic split (`Split.to_dict()`); None sends everything to the stable release."""


ACTOR_SOURCES = ("os", "claimed", "controller", "token", "jwt", "anonymous")
"""`os`: the operating-system account a local command ran as (user@host); `claimed`: a name
given by MLOPS_ACTOR (or by a caller of the Python API), which nobody verified; `controller`:
the controller's own decision (analysis, health, deadline); `token`: the API token the
request was authenticated with (`token:NAME`); `jwt`: the identity provider's JWT it was
authenticated with (`jwt:SUBJECT`); `anonymous`: a request with no valid token (only ever
refused)."""


@dataclass(frozen=True)
class Actor:
    """Who caused an event, and how that is known (one of ACTOR_SOURCES)."""

    name: str
    source: str


CONTROLLER = Actor("controller", "controller")


@dataclass(frozen=True)
class Event:
    id: int
    deployment: str | None
    action: str
    trigger: str
    actor: str
    reason: str | None
    from_revision: int | None
    to_revision: int | None
    details: dict[str, Any]
    at: datetime
    actor_source: str | None = None
    """How `actor` is known (ACTOR_SOURCES); None for events recorded before it was kept."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "action": self.action,
            "trigger": self.trigger,
            "actor": self.actor,
            "actor_source": self.actor_source,
            "reason": self.reason,
            "from": self.from_revision,
            "to": self.to_revision,
            "details": self.details,
            "at": iso(self.at),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        return cls(
            id=d["id"],
            deployment=d["deployment"],
            action=d["action"],
            trigger=d["trigger"],
            actor=d["actor"],
            reason=d["reason"],
            from_revision=d["from"],
            to_revision=d["to"],
            details=d["details"],
            at=at(d["at"]),
            actor_source=d["actor_source"],
        )


@dataclass(frozen=True)
class ReleaseRecord:
    deployment: str
    revision: int
    status: str
    strategy: str
    components: dict[str, ComponentRef]
    previous_stable: int | None
    source_revision: int | None
    changes: list[dict[str, Any]]
    created_at: datetime
    created_by: str
    event: Event | None = None

    @property
    def changed_components(self) -> list[str]:
        """The components this revision changed from the stable release before it."""
        return [str(c["component"]) for c in self.changes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "revision": self.revision,
            "status": self.status,
            "strategy": self.strategy,
            "components": components_dict(self.components),
            "changes": self.changes,
            "changed_components": self.changed_components,
            "previous_stable": self.previous_stable,
            "source_revision": self.source_revision,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "event": self.event.to_dict() if self.event else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReleaseRecord:
        return cls(
            deployment=d["deployment"],
            revision=d["revision"],
            status=d["status"],
            strategy=d["strategy"],
            components=components_of(d["components"]),
            previous_stable=d["previous_stable"],
            source_revision=d["source_revision"],
            changes=d["changes"],
            created_at=at(d["created_at"]),
            created_by=d["created_by"],
            event=Event.from_dict(d["event"]) if d["event"] else None,
        )


@dataclass(frozen=True)
class DeploymentStatus:
    deployment: str
    revision: int | None
    latest_revision: int
    phase: str
    components: dict[str, ComponentRef]
    quarantined: list[str]
    updated_at: datetime
    rollout: dict[str, Any] | None = None
    """The rollout in progress: candidate, strategy, phase, step k of n, weights, verdict."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "revision": self.revision,
            "latest_revision": self.latest_revision,
            "phase": self.phase,
            "components": components_dict(self.components),
            "quarantined": self.quarantined,
            "updated_at": iso(self.updated_at),
            "rollout": self.rollout,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeploymentStatus:
        return cls(
            deployment=d["deployment"],
            revision=d["revision"],
            latest_revision=d["latest_revision"],
            phase=d["phase"],
            components=components_of(d["components"]),
            quarantined=d["quarantined"],
            updated_at=at(d["updated_at"]),
            rollout=d["rollout"],
        )


@dataclass(frozen=True)
class ReleaseResult:
    """What a deploy or a rollback did. `changed` is False when the target was already serving."""

    deployment: str
    action: str
    changed: bool
    revision: int
    from_revision: int | None
    source_revision: int | None
    components: dict[str, ComponentRef]
    changes: list[dict[str, Any]] = field(default_factory=list)
    event_id: int | None = None
    reason: str | None = None
    """The reason recorded in the event."""
    data: list[dict[str, Any]] = field(default_factory=list)
    """What happened to each data resource: restored (with writes undone), kept, failed."""
    dry_run: bool = False
    """What the operation would do; nothing was changed (no event, no revision, no data)."""

    def to_dict(self) -> dict[str, Any]:
        dry = {"dry_run": True} if self.dry_run else {}
        return {
            **dry,
            "deployment": self.deployment,
            "action": self.action,
            "changed": self.changed,
            "revision": self.revision,
            "from": self.from_revision,
            "source_revision": self.source_revision,
            "components": components_dict(self.components),
            "changes": self.changes,
            "event_id": self.event_id,
            "reason": self.reason,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReleaseResult:
        return cls(
            deployment=d["deployment"],
            action=d["action"],
            changed=d["changed"],
            revision=d["revision"],
            from_revision=d["from"],
            source_revision=d["source_revision"],
            components=components_of(d["components"]),
            changes=d["changes"],
            event_id=d["event_id"],
            reason=d["reason"],
            data=d["data"],
            dry_run=d.get("dry_run", False),
        )


@dataclass(frozen=True)
class DataResource:
    """Data a deployment reads and a release may change, with what a rollback does to it."""

    name: str
    driver: str
    """`sqlite`, `postgresql` or `directory`."""
    location: str
    policy: str
    """`restore`, `keep` or `freeze`."""
    retention: dict[str, Any] = field(default_factory=dict)
    """`keep_last` snapshots, `max_age_s` seconds."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "location": redact(self.location),
            "policy": self.policy,
            "retention": self.retention,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataResource:
        return cls(d["name"], d["driver"], d["location"], d["policy"], d["retention"])


@dataclass(frozen=True)
class SnapshotRecord:
    """A verified copy of a data resource, taken before release `revision` migrated it."""

    id: int
    deployment: str
    revision: int
    resource: str
    driver: str
    location: str
    checksum: str
    size_bytes: int
    status: str
    """`ready`, `restoring`, `restored` or `restore_failed`."""
    created_at: datetime
    expires_at: datetime | None
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "revision": self.revision,
            "resource": self.resource,
            "driver": self.driver,
            "location": redact(self.location),
            "checksum": self.checksum,
            "size_bytes": self.size_bytes,
            "status": self.status,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SnapshotRecord:
        return cls(
            id=d["id"],
            deployment=d["deployment"],
            revision=d["revision"],
            resource=d["resource"],
            driver=d["driver"],
            location=d["location"],
            checksum=d["checksum"],
            size_bytes=d["size_bytes"],
            status=d["status"],
            created_at=at(d["created_at"]),
            expires_at=at(d["expires_at"]) if d["expires_at"] else None,
            details=d["details"],
        )


@dataclass(frozen=True)
class TokenInfo:
    """An API token as listed: never its secret nor the secret's hash."""

    name: str
    key_id: str
    role: str | None
    deployments: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    status: str
    """`active`, `expired` or `revoked`."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key_id": self.key_id,
            "role": self.role,
            "deployments": self.deployments,
            "scopes": list(self.scopes),
            "status": self.status,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "revoked_by": self.revoked_by,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TokenInfo:
        return cls(
            name=d["name"],
            key_id=d["key_id"],
            role=d["role"],
            deployments=d["deployments"],
            scopes=tuple(d["scopes"]),
            created_at=at(d["created_at"]),
            created_by=d["created_by"],
            expires_at=at(d["expires_at"]) if d["expires_at"] else None,
            revoked_at=at(d["revoked_at"]) if d["revoked_at"] else None,
            revoked_by=d["revoked_by"],
            status=d["status"],
        )


@dataclass(frozen=True)
class CreatedToken:
    """A token just created, with its secret: shown this once, never stored."""

    token: TokenInfo
    secret: str

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token.to_dict(), "secret": self.secret}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CreatedToken:
        return cls(TokenInfo.from_dict(d["token"]), d["secret"])
