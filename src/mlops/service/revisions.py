"""Writing a revision: the versions it pins checked (they serve together, none quarantined
unless forced, artifacts intact), then the release appended with the event that made it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from mlops.core.components import Stage, pipeline_problem, unread_resource
from mlops.core.refs import ComponentRef
from mlops.core.release import ComponentChange
from mlops.core.signature import Signature
from mlops.errors import InvalidInput, Quarantined
from mlops.records import Actor, Deployment, ModelVersion, ReleaseRecord, ReleaseResult
from mlops.service.base import version_of
from mlops.store.store import Tx


def check_targets(
    tx: Tx,
    dep: Deployment,
    components: Mapping[str, ComponentRef],
    changes: tuple[ComponentChange, ...],
    force: bool,
    verify: Callable[[ModelVersion], None],
) -> dict[str, ModelVersion]:
    """The versions of a release about to be written or routed, after checking that they can
    serve together and that each version it changes to has its artifact intact (`verify`)."""
    versions = {name: version_of(tx, ref) for name, ref in components.items()}
    stages = [
        Stage(name, str(v.ref), Signature.from_dict(v.signature)) for name, v in versions.items()
    ]
    unread = unread_resource(stages, {r.name: r.driver for r in tx.data_resources(dep.id)})
    if unread is not None:
        raise InvalidInput(unread)
    if not force:
        for change in changes:
            if change.after is None:
                continue
            target = versions[change.component]
            if target.quarantined:
                raise Quarantined(
                    f"{target.ref} is quarantined ({target.quarantine_reason}); "
                    "pass --force to use it anyway"
                )
        problem = pipeline_problem(stages)
        if problem is not None:
            raise InvalidInput(
                f"these components cannot run as one pipeline: {problem}; "
                "pass --force to use them together anyway"
            )
    for change in changes:
        if change.after is not None:
            verify(versions[change.component])
    return versions


def unchanged(dep: Deployment, action: str, stable: ReleaseRecord) -> ReleaseResult:
    return ReleaseResult(
        deployment=dep.name,
        action=action,
        changed=False,
        revision=stable.revision,
        from_revision=stable.revision,
        source_revision=None,
        components=dict(stable.components),
    )


def append_release(
    tx: Tx,
    dep: Deployment,
    *,
    action: str,
    trigger: str,
    actor: Actor,
    reason: str | None,
    at: datetime,
    versions: dict[str, ModelVersion],
    changes: tuple[ComponentChange, ...],
    source_revision: int | None,
    details: dict[str, Any],
    replaced_status: str = "superseded",
    status: str = "stable",
    strategy: str = "direct",
) -> ReleaseResult:
    revision = dep.latest_revision + 1
    change_dicts = [change.to_dict() for change in changes]
    event_id = tx.insert_event(
        deployment_id=dep.id,
        action=action,
        trigger=trigger,
        actor=actor.name,
        actor_source=actor.source,
        reason=reason,
        at=at,
        from_revision=dep.stable_revision,
        to_revision=revision,
        details={"changes": change_dicts, **details},
    )
    written = tx.append_release(
        dep,
        components={name: v.id for name, v in versions.items()},
        status=status,
        strategy=strategy,
        source_revision=source_revision,
        changes=change_dicts,
        event_id=event_id,
        actor=actor.name,
        at=at,
        replaced_status=replaced_status,
    )
    assert written == revision
    return ReleaseResult(
        deployment=dep.name,
        action=action,
        changed=True,
        revision=revision,
        from_revision=dep.stable_revision,
        source_revision=source_revision,
        components={name: v.ref for name, v in versions.items()},
        changes=change_dicts,
        event_id=event_id,
        reason=reason,
    )
