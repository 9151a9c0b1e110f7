"""The model registry: register versions, list them, load and verify their artifacts,
quarantine them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.core.refs import ComponentRef, check_name
from mlops.errors import IntegrityError, InvalidInput, NotFound
from mlops.records import Actor, ModelSummary, ModelVersion
from mlops.service.base import (
    ServiceBase,
    check_limit,
    check_reason,
    record_manual,
    version_of,
)

if TYPE_CHECKING:
    from mlops.registry.artifacts import StoredArtifact
    from mlops.registry.intake import Inspected


class RegistryOps(ServiceBase):
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
        origin: str | None = None,
    ) -> ModelVersion:
        """Check, store and record the next version of `model` (numbers are never reused).
        `origin` says where the artifact came from when `path` is only a staging copy (an
        upload); MLOPS_TRUST does not apply to one: only the caller's `trust` does."""
        check_name(model, "model")
        source = Path(path).expanduser()
        trusted = trust or (self.settings.trust_pickles and origin is None)
        inspected, stored = self._store_artifact(source, flavor, trusted, sample)
        now = self.clock()
        who = self._actor(actor)
        with self.store.write() as tx:
            model_id = tx.model_id(model, create_at=now, lock=True)
            assert model_id is not None
            number = tx.allocate_version(model_id)
            tx.insert_version(
                model_id,
                number,
                flavor=inspected.flavor,
                artifact_sha256=stored.sha256,
                artifact_kind=stored.kind,
                size_bytes=stored.size_bytes,
                signature=inspected.signature.to_dict(),
                tags=dict(tags or {}),
                source=origin or str(source.resolve()),
                trusted=trusted,
                status="ready",
                created_at=now,
                created_by=who.name,
            )
            record_manual(
                tx,
                who,
                "register",
                at=now,
                reason=None,
                details={
                    "model": model,
                    "version": number,
                    "flavor": inspected.flavor,
                    "sha256": stored.sha256,
                },
            )
            created = tx.version(model, number)
        assert created is not None
        return created

    def _store_artifact(
        self, source: Path, flavor: str | None, trusted: bool, sample: str | Path | None
    ) -> tuple[Inspected, StoredArtifact]:
        """Check an artifact (its flavor, its signature) and store it by content."""
        from mlops.registry.intake import inspect_artifact  # numpy and the flavors: loaded late

        inspected = inspect_artifact(
            source,
            flavor=flavor,
            trusted=trusted,
            sample=Path(sample).expanduser() if sample else None,
        )
        if inspected.data is not None:
            return inspected, self.artifacts.put_bytes(inspected.data)
        return inspected, self.artifacts.put_dir(inspected.path)

    def models(self) -> list[ModelSummary]:
        with self.store.read() as tx:
            return tx.model_summaries()

    def versions(self, model: str, *, limit: int = 50) -> list[ModelVersion]:
        check_limit(limit)
        with self.store.read() as tx:
            found = tx.versions(model, limit=limit)
            if not found and tx.model_id(model) is None:
                raise NotFound(f"model {model!r} is not registered")
            return found

    def version(self, ref: ComponentRef) -> ModelVersion:
        with self.store.read() as tx:
            return version_of(tx, ref)

    def load(self, ref: ComponentRef) -> Any:
        """The model object of a version, loaded from its artifact after verifying its hash."""
        from mlops.registry.loaders import load_version

        return load_version(self.version(ref), self.artifacts, str(ref))

    def verify_artifact(self, version: ModelVersion) -> None:
        """Raise `IntegrityError` when the artifact of `version` is missing or corrupt."""
        try:
            self.artifacts.verify(version.artifact_sha256, version.artifact_kind)
        except IntegrityError as exc:
            raise IntegrityError(f"{version.ref} cannot be served: {exc}") from None

    def _verifier(self, done: set[int]) -> Callable[[ModelVersion], None]:
        """`verify_artifact`, once per version: the ids in `done` were checked already."""

        def verify(version: ModelVersion) -> None:
            if version.id not in done:
                self.verify_artifact(version)
                done.add(version.id)

        return verify

    def quarantine(
        self,
        ref: ComponentRef,
        *,
        reason: str | None,
        lift: bool = False,
        actor: Actor | str | None = None,
    ) -> ModelVersion:
        """Mark a version bad (deploying it then needs force), or lift the mark."""
        if not lift and not (reason and reason.strip()):
            raise InvalidInput("a quarantine needs a reason: --reason TEXT")
        check_reason(reason)
        now = self.clock()
        who = self._actor(actor)
        with self.store.write() as tx:
            version = version_of(tx, ref)
            status = "ready" if lift else "quarantined"
            tx.set_version_status(
                version.id,
                status,
                reason=None if lift else reason,
                actor=None if lift else who.name,
                at=None if lift else now,
            )
            record_manual(
                tx,
                who,
                "unquarantine" if lift else "quarantine",
                at=now,
                reason=reason,
                details={
                    "model": ref.model,
                    "version": ref.version,
                    "serving_in": tx.deployments_serving(version.id),
                },
            )
            updated = tx.version(ref.model, ref.version)
        assert updated is not None
        return updated
