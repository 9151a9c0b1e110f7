"""The tables. Every lookup the rollback path makes is by a primary key or a unique index."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


Id = BigInteger().with_variant(Integer(), "sqlite")
Name = String(63)
When = UtcDateTime()

store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Name, nullable=False, unique=True),
    Column("latest_version", Integer, nullable=False, default=0),
    Column("description", Text, nullable=True),
    Column("created_at", When, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, ForeignKey("models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("flavor", String(16), nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("artifact_kind", String(8), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("signature", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("source", Text, nullable=True),
    Column("trusted", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False, default="ready"),
    Column("quarantine_reason", Text, nullable=True),
    Column("quarantined_at", When, nullable=True),
    Column("quarantined_by", String(255), nullable=True),
    Column("created_at", When, nullable=False),
    Column("created_by", String(255), nullable=False),
    UniqueConstraint("model_id", "version"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Name, nullable=False, unique=True),
    Column("latest_revision", Integer, nullable=False, default=0),
    Column("stable_revision", Integer, nullable=True),
    Column("candidate_revision", Integer, nullable=True),
    Column("phase", String(16), nullable=False, default="idle"),
    Column("data_policy", String(16), nullable=False, default="restore"),
    Column("config", JSON, nullable=False),
    Column("routes", JSON, nullable=True),
    Column("created_at", When, nullable=False),
    Column("updated_at", When, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment_id", Id, ForeignKey("deployments.id"), nullable=True),
    Column("action", String(32), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=True),
    Column("from_revision", Integer, nullable=True),
    Column("to_revision", Integer, nullable=True),
    Column("details", JSON, nullable=False),
    Column("at", When, nullable=False),
    Index(None, "deployment_id", "id"),
)

releases = Table(
    "releases",
    metadata,
    Column("deployment_id", Id, ForeignKey("deployments.id"), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("previous_stable", Integer, nullable=True),
    Column("source_revision", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("strategy", String(16), nullable=False),
    Column("config", JSON, nullable=False),
    Column("changes", JSON, nullable=False),
    Column("event_id", Id, ForeignKey("events.id"), nullable=True),
    Column("created_at", When, nullable=False),
    Column("created_by", String(255), nullable=False),
)

release_components = Table(
    "release_components",
    metadata,
    Column("deployment_id", Id, primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("component", Name, primary_key=True),
    Column("model_version_id", Id, ForeignKey("model_versions.id"), nullable=False),
    ForeignKeyConstraint(
        ["deployment_id", "revision"], ["releases.deployment_id", "releases.revision"]
    ),
)

# The latest stable release of a deployment that pinned a version in a component:
# `rollback --version N` is one primary-key lookup here.
release_pins = Table(
    "release_pins",
    metadata,
    Column("deployment_id", Id, ForeignKey("deployments.id"), primary_key=True),
    Column("component", Name, primary_key=True),
    Column("model_version_id", Id, ForeignKey("model_versions.id"), primary_key=True),
    Column("revision", Integer, nullable=False),
)

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment_id", Id, ForeignKey("deployments.id"), nullable=False),
    Column("candidate_revision", Integer, nullable=False),
    Column("stable_revision", Integer, nullable=True),
    Column("strategy", String(16), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("phase", String(16), nullable=False),
    Column("step_index", Integer, nullable=False, default=0),
    Column("state", JSON, nullable=False),
    Column("verdict", JSON, nullable=True),
    Column("started_at", When, nullable=False),
    Column("updated_at", When, nullable=False),
    Column("ended_at", When, nullable=True),
    Index(None, "deployment_id", "id"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment_id", Id, ForeignKey("deployments.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("args", JSON, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", When, nullable=False),
    Column("applied_at", When, nullable=True),
    Column("result", JSON, nullable=True),
    Index(None, "applied_at", "id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, ForeignKey("events.id"), nullable=False),
    Column("channel", String(255), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", When, nullable=False),
    Column("delivered_at", When, nullable=True),
    Column("last_error", Text, nullable=True),
    Index(None, "delivered_at", "next_attempt_at"),
)

data_resources = Table(
    "data_resources",
    metadata,
    Column("deployment_id", Id, ForeignKey("deployments.id"), primary_key=True),
    Column("name", Name, primary_key=True),
    Column("driver", String(16), nullable=False),
    Column("location", Text, nullable=False),
    Column("policy", String(16), nullable=False),
    Column("retention", JSON, nullable=True),
    Column("created_at", When, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment_id", Id, ForeignKey("deployments.id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("resource", Name, nullable=False),
    Column("driver", String(16), nullable=False),
    Column("location", Text, nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", When, nullable=False),
    Column("expires_at", When, nullable=True),
    Column("details", JSON, nullable=True),
    UniqueConstraint("deployment_id", "revision", "resource"),
)

# Per-version measurements, flushed by each gateway worker about once a second.
measurements = Table(
    "measurements",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("deployment_id", Id, ForeignKey("deployments.id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("role", String(8), nullable=False),
    Column("worker", String(64), nullable=False),
    Column("started_at", When, nullable=False),
    Column("ended_at", When, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("errors", JSON, nullable=False),
    Column("latency", JSON, nullable=False),
    Column("predictions", JSON, nullable=False),
    Index(None, "deployment_id", "ended_at"),
)

# What each request was answered, kept for a while so delayed labels can be joined to it.
# Keyed by deployment first: a request id chosen by one deployment's client never meets
# another deployment's.
predictions = Table(
    "predictions",
    metadata,
    Column("deployment_id", Id, ForeignKey("deployments.id"), primary_key=True),
    Column("request_id", String(64), primary_key=True),
    Column("role", String(8), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("prediction", JSON, nullable=False),
    Column("at", When, nullable=False),
    Index(None, "at"),
)

# One label per served request, never overwritten.
feedback = Table(
    "feedback",
    metadata,
    Column("deployment_id", Id, ForeignKey("deployments.id"), primary_key=True),
    Column("request_id", String(64), primary_key=True),
    Column("label", JSON, nullable=False),
    Column("at", When, nullable=False),
    Index(None, "deployment_id", "at"),
)

# Who leads: one row per role (the controller), held by renewing it before it expires.
leases = Table(
    "leases",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", When, nullable=False),
    Column("epoch", Integer, nullable=False, server_default="0"),
)

# Artifacts every host can read (PostgreSQL stores): each blob as the ordered SHA-256 of its
# chunks, each chunk kept once by its own SHA-256.
artifact_blobs = Table(
    "artifact_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("chunks", JSON, nullable=False),
)

artifact_chunks = Table(
    "artifact_chunks",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# API tokens: only the SHA-256 of each secret is kept; `key_id` is the secret's public part.
tokens = Table(
    "tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key_id", String(12), nullable=False, unique=True),
    Column("name", Name, nullable=False),
    Column("role", String(16), nullable=True),
    Column("deployments", String(128), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", When, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("expires_at", When, nullable=True),
    Column("revoked_at", When, nullable=True),
    Column("revoked_by", String(255), nullable=True),
    Index(None, "name"),
)

# Dashboard sign-ins: only the SHA-256 of each session's secret is kept. A session signed in
# with an API token follows that token (revoked: the session ends); one signed in with a JWT
# keeps the identity it carried, until the JWT's own expiry at the latest.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("csrf", String(64), nullable=False),
    Column("token_id", Id, ForeignKey("tokens.id"), nullable=True),
    Column("identity", JSON, nullable=False),
    Column("created_at", When, nullable=False),
    Column("expires_at", When, nullable=False),
    Column("ended_at", When, nullable=True),
)

# What a rollout's analysis showed at each tick, so that a page opened late shows the whole
# story; thinned to at most ANALYSIS_POINTS_MAX per rollout.
analysis_points = Table(
    "analysis_points",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rollout_id", Id, ForeignKey("rollouts.id"), nullable=False),
    Column("at", When, nullable=False),
    Column("point", JSON, nullable=False),
    Index(None, "rollout_id", "id"),
)
