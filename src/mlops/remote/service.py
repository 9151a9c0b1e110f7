"""The operations of the CLI and the `Client`, through a server's control API: the same
methods as the local `Service`, answering the same records (read back from the API's JSON,
which is the `-o json` document), raising the same errors.

What names a file on this machine is sent: an artifact is uploaded (a folder as a tar archive)
with its SHA-256. What names something on the server (an `.sql` migration or a
`module:function`, a data resource's path) is the server's, as the API documents."""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mlops.core.limits import HISTORY_LIMIT, LIST_MAX, SPEC_MAX_BYTES
from mlops.core.measure import Measurements
from mlops.core.refs import ComponentRef, only_deployment
from mlops.errors import InvalidInput, UnreadableFile
from mlops.records import (
    Actor,
    CreatedToken,
    DataResource,
    DeploymentStatus,
    Event,
    ModelSummary,
    ModelVersion,
    ReleaseRecord,
    ReleaseResult,
    SnapshotRecord,
    TokenInfo,
)
from mlops.remote.http import Connection, Remote

if TYPE_CHECKING:
    from mlops.core.routing import Split
    from mlops.rollout_spec import RolloutFile

CHUNK = 1 << 20


@dataclass(frozen=True)
class SpecText:
    """A rollout spec as its YAML text (None: the defaults), with a strategy that overrides
    the text's: the server checks it, as it checks a spec sent by any client."""

    text: str | None
    strategy: str | None

    @classmethod
    def read(cls, path: Path | None, strategy: str | None) -> SpecText:
        if path is None:
            return cls(None, strategy or "direct")
        try:
            with path.open("rb") as source:
                raw = source.read(SPEC_MAX_BYTES + 1)
        except OSError as exc:
            raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(raw) > SPEC_MAX_BYTES:
            raise InvalidInput(f"the rollout spec {path} is larger than {SPEC_MAX_BYTES} bytes")
        try:
            return cls(raw.decode(), strategy)
        except UnicodeDecodeError:
            raise InvalidInput(f"the rollout spec {path} is not UTF-8 text") from None


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


class RemoteService:
    """A server's control API, called as the local service is. The actor of every change is
    the token's identity: a local `actor` argument is not sent (the server never trusts one)."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self._http = Connection(remote)

    def close(self) -> None:
        self._http.close()

    def _deployment(self, name: str | None) -> str:
        if name is not None:
            return name
        found = self._http.call("GET", "/deployments")
        return only_deployment([str(d["deployment"]) for d in found])

    def _on(self, deployment: str | None, *rest: str) -> str:
        return _path("deployments", self._deployment(deployment), *rest)

    # Registry

    def register(
        self,
        model: str,
        path: str | Path,
        *,
        flavor: str | None = None,
        tags: Mapping[str, str] | None = None,
        trust: bool = False,
        sample: str | Path | None = None,
        actor: Actor | str | None = None,
    ) -> ModelVersion:
        if sample is not None:
            raise InvalidInput("--sample is read on the server's machine: register locally")
        query: dict[str, Any] = {"flavor": flavor, "trust": trust or None}
        query["tag"] = [f"{k}={v}" for k, v in (tags or {}).items()] or None
        with tempfile.TemporaryFile() as spool:
            kind, digest, size = _spooled(Path(path), spool)
            headers = {
                "content-type": kind,
                "x-content-sha256": digest,
                "content-length": str(size),
            }
            found = self._http.call(
                "POST",
                _path("models", model, "versions"),
                query=query,
                upload=spool,
                headers=headers,
            )
        return ModelVersion.from_dict(found)

    def models(self) -> list[ModelSummary]:
        return [ModelSummary.from_dict(d) for d in self._http.call("GET", "/models")]

    def versions(self, model: str, *, limit: int = 50) -> list[ModelVersion]:
        found = self._http.call("GET", _path("models", model, "versions"), query={"limit": limit})
        return [ModelVersion.from_dict(d) for d in found]

    def quarantine(
        self,
        ref: ComponentRef,
        *,
        reason: str | None,
        lift: bool = False,
        actor: Actor | str | None = None,
    ) -> ModelVersion:
        where = _path("models", ref.model, "versions", str(ref.version), "quarantine")
        found = self._http.call("POST", where, {"reason": reason, "lift": lift})
        return ModelVersion.from_dict(found)

    # Releases

    def deploy(
        self,
        deployment: str,
        *,
        model: ComponentRef | None = None,
        components: Mapping[str, ComponentRef] | None = None,
        remove: frozenset[str] = frozenset(),
        force: bool = False,
        reason: str | None = None,
        actor: Actor | str | None = None,
        rollout: RolloutFile | SpecText | None = None,
        migration: str | None = None,
        data: Sequence[str] = (),
        dry_run: bool = False,
    ) -> ReleaseResult:
        body: dict[str, Any] = {
            "model": str(model) if model else None,
            "components": {name: str(ref) for name, ref in (components or {}).items()},
            "remove": sorted(remove),
            **_spec_fields(rollout),
            "migration": migration,
            "data": list(data),
            "force": force,
            "reason": reason,
            "dry_run": dry_run,
        }
        return ReleaseResult.from_dict(
            self._http.call("POST", _path("deployments", deployment, "deploy"), body)
        )

    def rollback(
        self,
        deployment: str | None = None,
        *,
        version: int | None = None,
        revision: int | None = None,
        component: str | None = None,
        reason: str | None = None,
        force: bool = False,
        actor: Actor | str | None = None,
        dry_run: bool = False,
    ) -> ReleaseResult:
        body = {
            "version": version,
            "revision": revision,
            "component": component,
            "reason": reason,
            "force": force,
            "dry_run": dry_run,
        }
        return ReleaseResult.from_dict(
            self._http.call("POST", self._on(deployment, "rollback"), body)
        )

    def set_traffic(
        self,
        deployment: str | None,
        weights: Mapping[int, float],
        *,
        shadows: Mapping[int, float] | None = None,
        force: bool = False,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Split:
        from mlops.core.routing import Split

        body = {
            "weights": {str(k): v for k, v in weights.items()},
            "shadows": {str(k): v for k, v in (shadows or {}).items()},
            "force": force,
            "reason": reason,
        }
        return Split.from_dict(self._http.call("POST", self._on(deployment, "traffic"), body))

    def request(
        self,
        deployment: str | None,
        kind: str,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> int:
        verb = "promote" if kind == "promote_full" else kind
        body: dict[str, Any] = {"reason": reason}
        if kind == "promote_full":
            body["full"] = True
        answer = self._http.call("POST", self._on(deployment, verb), body)
        return int(answer["command"])

    # Reads

    def status(self, deployment: str | None = None) -> list[DeploymentStatus]:
        if deployment is not None:
            return [DeploymentStatus.from_dict(self._http.call("GET", self._on(deployment)))]
        return [DeploymentStatus.from_dict(d) for d in self._http.call("GET", "/deployments")]

    def history(
        self,
        deployment: str | None = None,
        *,
        limit: int = HISTORY_LIMIT,
        before: int | None = None,
    ) -> list[ReleaseRecord]:
        query = {"limit": limit, "before": before}
        found = self._http.call("GET", self._on(deployment, "history"), query=query)
        return [ReleaseRecord.from_dict(d) for d in found]

    def events(self, deployment: str | None = None, *, limit: int = 50) -> list[Event]:
        where = self._on(deployment, "events") if deployment else "/events"
        return [Event.from_dict(d) for d in self._http.call("GET", where, query={"limit": limit})]

    def measurements(self, deployment: str | None, *, window_s: float = 60.0) -> list[Measurements]:
        query = {"window_s": max(1, round(window_s))}
        found = self._http.call("GET", self._on(deployment, "measurements"), query=query)
        return [Measurements.from_dict(d) for d in found]

    # Data

    def data(self, deployment: str | None = None) -> list[DataResource]:
        return [
            DataResource.from_dict(d) for d in self._http.call("GET", self._on(deployment, "data"))
        ]

    def add_data(
        self,
        deployment: str,
        name: str,
        *,
        driver: str,
        location: str,
        policy: str = "restore",
        keep_last: int | None = None,
        max_age_s: float | None = None,
    ) -> DataResource:
        body: dict[str, Any] = {"name": name, driver: location, "policy": policy}
        body |= {"keep_last": keep_last, "max_age_s": max_age_s}
        where = _path("deployments", deployment, "data")
        return DataResource.from_dict(self._http.call("POST", where, body))

    def remove_data(self, deployment: str | None, name: str) -> None:
        self._http.call("POST", self._on(deployment, "data", name, "remove"))

    def put_back_due(self, deployment: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._http.call(
            "POST", self._on(deployment, "data", "restore")
        )
        return found

    def snapshots(self, deployment: str | None = None) -> list[SnapshotRecord]:
        found = self._http.call("GET", self._on(deployment, "snapshots"))
        return [SnapshotRecord.from_dict(d) for d in found]

    # Tokens

    def create_token(
        self,
        name: str,
        *,
        role: str | None,
        deployments: str = "*",
        scopes: Sequence[str] = (),
        expires_in_s: float | None = None,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> CreatedToken:
        body = {
            "name": name,
            "role": role,
            "deployments": deployments,
            "scopes": list(scopes),
            "expires_in_s": expires_in_s,
            "reason": reason,
        }
        return CreatedToken.from_dict(self._http.call("POST", "/tokens", body))

    def tokens(self, *, limit: int = LIST_MAX) -> list[TokenInfo]:
        return [TokenInfo.from_dict(d) for d in self._http.call("GET", "/tokens")]

    def revoke_token(
        self, name: str, *, reason: str | None = None, actor: Actor | str | None = None
    ) -> TokenInfo:
        found = self._http.call("POST", _path("tokens", name, "revoke"), {"reason": reason})
        return TokenInfo.from_dict(found)


def _spec_fields(rollout: RolloutFile | SpecText | None) -> dict[str, Any]:
    if isinstance(rollout, SpecText):
        return {"rollout": rollout.text, "strategy": rollout.strategy}
    dumped = rollout.model_dump(mode="json", exclude_none=True) if rollout is not None else None
    return {"rollout": dumped}


def _spooled(path: Path, spool: Any) -> tuple[str, str, int]:
    """Write the artifact into `spool` (a folder as a tar archive, links refused); its content
    type, SHA-256 and size."""
    if not path.exists():
        raise UnreadableFile(f"{path} does not exist")
    root = path.parent if path.name == "MLmodel" and path.is_file() else path
    kind = "application/octet-stream"
    if root.is_dir():
        kind = "application/x-tar"
        with tarfile.open(fileobj=spool, mode="w") as archive:
            for entry in sorted(root.rglob("*")):
                if entry.is_symlink():
                    raise InvalidInput(f"{entry} is a link: a model folder must hold plain files")
                archive.add(entry, arcname=str(entry.relative_to(root)), recursive=False)
    else:
        with root.open("rb") as source:
            while chunk := source.read(CHUNK):
                spool.write(chunk)
    spool.seek(0)
    digest, size = hashlib.sha256(), 0
    while chunk := spool.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    spool.seek(0)
    return kind, digest.hexdigest(), size
