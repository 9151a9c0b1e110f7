"""The Python API: `Client` offers the operations of the CLI, on the same service layer: a
local store's, or a server's through its control API (`Client(url=..., token=...)`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.core.limits import HISTORY_LIMIT
from mlops.core.measure import Measurements
from mlops.core.refs import ComponentRef, parse_ref
from mlops.core.resources import one_location
from mlops.errors import InvalidInput
from mlops.records import (
    DataResource,
    DeploymentStatus,
    Event,
    ModelSummary,
    ModelVersion,
    ReleaseRecord,
    ReleaseResult,
    SnapshotRecord,
)

if TYPE_CHECKING:
    from mlops.core.routing import Split
    from mlops.operations import Operations


def _ref(value: str | ComponentRef) -> ComponentRef:
    return value if isinstance(value, ComponentRef) else parse_ref(value)


class Client:
    """A handle on one store. `Client()` uses `MLOPS_HOME` / `MLOPS_STORE` like the CLI;
    `Client(url=...)` a server's control API, with `token` (default `MLOPS_TOKEN`) and
    `ca_bundle` (default `MLOPS_CA_BUNDLE`) for its TLS certificate.

    >>> client = Client(home="/tmp/mlops-example")
    >>> client.register("fraud", "model.joblib", trust=True)          # doctest: +SKIP
    >>> client.deploy("fraud-api", model="fraud:1")                   # doctest: +SKIP
    >>> client.rollback(version=1)                                    # doctest: +SKIP
    >>> remote = Client(url="https://mlops.example.com", token="mlops_…")  # doctest: +SKIP
    """

    def __init__(
        self,
        store: str | None = None,
        *,
        home: str | Path | None = None,
        url: str | None = None,
        token: str | None = None,
        ca_bundle: str | Path | None = None,
        allow_http: bool = False,
    ) -> None:
        self._service: Operations
        if url is not None:
            if store is not None or home is not None:
                raise InvalidInput("a Client opens a local store or a server's API, not both")
            from mlops.remote.credentials import from_environment
            from mlops.remote.http import Remote
            from mlops.remote.service import RemoteService

            env = from_environment(url)
            assert env is not None
            self._service = RemoteService(
                Remote(
                    url,
                    token or env.token,
                    str(ca_bundle) if ca_bundle is not None else env.ca_file,
                    allow_http or env.allow_http,
                )
            )
        else:
            from mlops.service import Service
            from mlops.settings import load_settings

            self._service = Service(load_settings(home=home, store_url=store))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._service.close()

    def register(
        self,
        model: str,
        path: str | Path,
        *,
        flavor: str | None = None,
        tags: Mapping[str, str] | None = None,
        trust: bool = False,
        sample: str | Path | None = None,
    ) -> ModelVersion:
        return self._service.register(
            model, path, flavor=flavor, tags=tags, trust=trust, sample=sample
        )

    def models(self) -> list[ModelSummary]:
        return self._service.models()

    def versions(self, model: str, *, limit: int = 50) -> list[ModelVersion]:
        return self._service.versions(model, limit=limit)

    def load(self, ref: str | ComponentRef) -> Any:
        """The model object of a version (a local store's: models load where they run)."""
        from mlops.service import Service

        if not isinstance(self._service, Service):
            raise InvalidInput("load() needs a local store: a remote Client does not load models")
        return self._service.load(_ref(ref))

    def deploy(
        self,
        deployment: str,
        *,
        model: str | ComponentRef | None = None,
        components: Mapping[str, str | ComponentRef] | None = None,
        remove: Iterable[str] = (),
        force: bool = False,
        reason: str | None = None,
        strategy: str | None = None,
        rollout: Mapping[str, Any] | str | Path | None = None,
        migration: str | Path | None = None,
        data: Iterable[str] = (),
        dry_run: bool = False,
    ) -> ReleaseResult:
        """Write the next release; with a `strategy` other than `direct`, or a `rollout` spec
        (a YAML file's path or its mapping), the controller rolls it out step by step. A
        `migration` (.sql file or `module:function`) changes the `data` resources named (all,
        by default) after they are snapshotted. `dry_run`: what would change, changing
        nothing."""
        from mlops.rollout_spec import load_spec, read_spec_file

        if isinstance(rollout, str | Path):
            spec = read_spec_file(rollout, strategy=strategy)
        elif rollout is not None or strategy is not None:
            spec = load_spec(dict(rollout or {}), strategy=strategy)
        else:
            spec = None
        return self._service.deploy(
            deployment,
            model=_ref(model) if model is not None else None,
            components={name: _ref(ref) for name, ref in (components or {}).items()},
            remove=frozenset(remove),
            force=force,
            reason=reason,
            rollout=spec,
            migration=str(migration) if migration is not None else None,
            data=tuple(data),
            dry_run=dry_run,
        )

    def add_data(
        self,
        deployment: str,
        name: str,
        *,
        sqlite: str | Path | None = None,
        postgresql: str | None = None,
        directory: str | Path | None = None,
        policy: str = "restore",
        keep_last: int | None = None,
        max_age_s: float | None = None,
    ) -> DataResource:
        """Declare data DEPLOYMENT reads: one of an SQLite file, a PostgreSQL URL (`?schema=`),
        a folder; `policy` says what a rollback does to it: restore, keep or freeze."""
        driver, location = one_location(sqlite=sqlite, postgresql=postgresql, directory=directory)
        return self._service.add_data(
            deployment,
            name,
            driver=driver,
            location=location,
            policy=policy,
            keep_last=keep_last,
            max_age_s=max_age_s,
        )

    def data(self, deployment: str | None = None) -> list[DataResource]:
        return self._service.data(deployment)

    def snapshots(self, deployment: str | None = None) -> list[SnapshotRecord]:
        """The snapshots of a deployment's data, newest first."""
        return self._service.snapshots(deployment)

    def promote(
        self, deployment: str | None = None, *, full: bool = False, reason: str | None = None
    ) -> int:
        """Finish the rollout's current step (`full`: every remaining step) at the next tick."""
        return self._service.request(
            deployment, "promote_full" if full else "promote", reason=reason
        )

    def abort(self, deployment: str | None = None, *, reason: str | None = None) -> int:
        """Send all traffic back to stable and end the rollout, without quarantine."""
        return self._service.request(deployment, "abort", reason=reason)

    def pause(self, deployment: str | None = None, *, reason: str | None = None) -> int:
        return self._service.request(deployment, "pause", reason=reason)

    def resume(self, deployment: str | None = None, *, reason: str | None = None) -> int:
        return self._service.request(deployment, "resume", reason=reason)

    def rollback(
        self,
        deployment: str | None = None,
        *,
        version: int | None = None,
        revision: int | None = None,
        component: str | None = None,
        reason: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> ReleaseResult:
        """Make an earlier release stable again; `dry_run`: what would change (the revision,
        each component, the data to restore and the writes a restore would discard)."""
        return self._service.rollback(
            deployment,
            version=version,
            revision=revision,
            component=component,
            reason=reason,
            force=force,
            dry_run=dry_run,
        )

    def quarantine(self, ref: str | ComponentRef, *, reason: str) -> ModelVersion:
        return self._service.quarantine(_ref(ref), reason=reason)

    def unquarantine(self, ref: str | ComponentRef, *, reason: str | None = None) -> ModelVersion:
        return self._service.quarantine(_ref(ref), reason=reason, lift=True)

    def status(self, deployment: str | None = None) -> list[DeploymentStatus]:
        return self._service.status(deployment)

    def history(
        self,
        deployment: str | None = None,
        *,
        limit: int = HISTORY_LIMIT,
        before: int | None = None,
    ) -> list[ReleaseRecord]:
        return self._service.history(deployment, limit=limit, before=before)

    def set_traffic(
        self,
        deployment: str | None,
        weights: Mapping[int, float],
        *,
        shadows: Mapping[int, float] | None = None,
        force: bool = False,
        reason: str | None = None,
    ) -> Split:
        """Split live traffic between revisions, e.g. `{4: 90, 5: 10}`; mirror shares to shadows."""
        return self._service.set_traffic(
            deployment, weights, shadows=shadows, force=force, reason=reason
        )

    def measurements(
        self, deployment: str | None = None, *, window_s: float = 60.0
    ) -> list[Measurements]:
        """What the gateways measured per revision over the last `window_s` seconds."""
        return self._service.measurements(deployment, window_s=window_s)

    def events(self, deployment: str | None = None, *, limit: int = 50) -> list[Event]:
        return self._service.events(deployment, limit=limit)
