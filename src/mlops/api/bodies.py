"""The JSON bodies the control API takes: unknown fields are refused, numbers bounded."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mlops.core.refs import MAX_INT
from mlops.service import REASON_MAX

BODY_MAX = 256 * 1024
"""The largest JSON body a control request may have (a rollout spec fits many times)."""

Version = Field(default=None, ge=1, le=MAX_INT)
Reason = Field(default=None, max_length=REASON_MAX)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DeployBody(Body):
    model: str | None = Field(default=None, description="MODEL:VERSION of the primary component")
    components: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="NAME -> MODEL:VERSION"
    )
    remove: list[str] = Field(default_factory=list, max_length=64)
    strategy: str | None = Field(default=None, description="direct, canary, linear, ...")
    rollout: dict[str, Any] | str | None = Field(
        default=None, description="a rollout spec: a JSON object, or YAML text"
    )
    migration: str | None = Field(default=None, description="an .sql file or module:function")
    data: list[str] = Field(default_factory=list, max_length=64)
    force: bool = False
    reason: str | None = Reason
    dry_run: bool = False


class RollbackBody(Body):
    version: int | None = Version
    revision: int | None = Version
    component: str | None = None
    force: bool = False
    reason: str | None = Reason
    dry_run: bool = False


class RequestBody(Body):
    reason: str | None = Reason


class PromoteBody(RequestBody):
    full: bool = False


Revision = Annotated[int, Field(ge=1, le=MAX_INT)]


class TrafficBody(Body):
    weights: dict[Revision, float] = Field(max_length=16, description="REVISION -> percent")
    shadows: dict[Revision, float] = Field(default_factory=dict, max_length=16)
    force: bool = False
    reason: str | None = Reason


class QuarantineBody(Body):
    reason: str | None = Reason
    lift: bool = False


class TokenBody(Body):
    name: str
    role: str | None = None
    scopes: list[str] = Field(default_factory=list, max_length=4)
    deployments: str = "*"
    expires_in_s: float | None = Field(default=None, gt=0)
    reason: str | None = Reason


class DataBody(Body):
    name: str
    sqlite: str | None = Field(default=None, description="an SQLite file on the server")
    postgresql: str | None = Field(default=None, description="a PostgreSQL URL")
    directory: str | None = Field(default=None, description="a folder on the server")
    policy: str = "restore"
    keep_last: int | None = Field(default=None, ge=1, le=10_000)
    max_age_s: float | None = Field(default=None, gt=0, le=3650 * 86_400)


class RevokeBody(Body):
    reason: str | None = Reason
