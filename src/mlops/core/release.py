"""Releases and rollback-target resolution.

A rollback target is found by a key, never by walking history: `rollback_key` says which
single release to fetch (by revision, or by the latest release that pinned a version), and
`plan_rollback` turns what was fetched into the components of the new revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mlops.core.refs import ComponentRef
from mlops.errors import BadReference, Conflict, NoRollbackTarget, NotFound

PRIMARY = "model"

Components = Mapping[str, ComponentRef]


@dataclass(frozen=True)
class Release:
    revision: int
    components: Components
    previous_stable: int | None = None


@dataclass(frozen=True)
class ComponentChange:
    component: str
    before: ComponentRef | None
    after: ComponentRef | None

    def describe(self) -> str:
        before = str(self.before) if self.before else "-"
        after = str(self.after) if self.after else "-"
        return f"{self.component}: {before} -> {after}"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "component": self.component,
            "from": str(self.before) if self.before else None,
            "to": str(self.after) if self.after else None,
        }


def diff_components(before: Components, after: Components) -> tuple[ComponentChange, ...]:
    names = sorted(set(before) | set(after))
    return tuple(
        ComponentChange(name, before.get(name), after.get(name))
        for name in names
        if before.get(name) != after.get(name)
    )


@dataclass(frozen=True)
class DeployPlan:
    components: Components
    changes: tuple[ComponentChange, ...]


def plan_deploy(
    stable: Release | None,
    changes: Mapping[str, ComponentRef],
    remove: frozenset[str] = frozenset(),
) -> DeployPlan:
    """The components of a new release: the stable ones, changed by `changes` and `remove`."""
    if not changes and not remove:
        raise BadReference(
            "nothing to deploy: give --model MODEL:VERSION or --component NAME=MODEL:VERSION"
        )
    if PRIMARY in remove:
        raise BadReference(f"the primary component {PRIMARY!r} cannot be removed")
    both = remove & set(changes)
    if both:
        raise BadReference(f"component {sorted(both)[0]!r} is both set and removed")
    current: Components = stable.components if stable else {}
    if stable is None and PRIMARY not in changes:
        raise BadReference("a new deployment needs its primary model: --model MODEL:VERSION")
    unknown = sorted(remove - set(current))
    if unknown:
        raise NotFound(f"component {unknown[0]!r} is not in the stable release")
    merged = {name: ref for name, ref in {**current, **changes}.items() if name not in remove}
    return DeployPlan(merged, diff_components(current, merged))


@dataclass(frozen=True)
class RollbackRequest:
    revision: int | None = None
    version: int | None = None
    component: str | None = None


@dataclass(frozen=True)
class RevisionKey:
    """Fetch release `revision` of the deployment."""

    revision: int


@dataclass(frozen=True)
class VersionKey:
    """Fetch the latest release whose `component` pinned `ref`, and `ref` from the registry."""

    component: str
    ref: ComponentRef


RollbackKey = RevisionKey | VersionKey


def rollback_key(stable: Release, request: RollbackRequest) -> RollbackKey:
    """Which one release a rollback needs, found by a keyed lookup."""
    if request.revision is not None and request.version is not None:
        raise BadReference("--revision and --version exclude each other")
    if request.revision is not None:
        return RevisionKey(request.revision)
    component = request.component or PRIMARY
    if request.version is not None:
        current = stable.components.get(component)
        if current is None:
            raise NotFound(
                f"component {component!r} is not in release {stable.revision}; "
                f"it has {', '.join(sorted(stable.components))}"
            )
        return VersionKey(component, ComponentRef(current.model, request.version))
    if stable.previous_stable is None:
        if request.component is not None and request.component not in stable.components:
            raise NotFound(
                f"component {request.component!r} is not in release {stable.revision}; "
                f"it has {', '.join(sorted(stable.components))}"
            )
        raise NoRollbackTarget(
            f"release {stable.revision} is the first stable release: "
            "there is no earlier release to roll back to"
        )
    return RevisionKey(stable.previous_stable)


@dataclass(frozen=True)
class RollbackPlan:
    components: Components
    changes: tuple[ComponentChange, ...]
    source_revision: int | None
    """The release whose content is restored, or None for a new release built from the registry."""

    partial: bool = field(default=False)


def plan_rollback(
    stable: Release,
    request: RollbackRequest,
    key: RollbackKey,
    found: Release | None,
    registered: bool = False,
) -> RollbackPlan:
    """The components of the rollback's new revision.

    `found` is the release fetched for `key` (None when no release matches); for a
    `VersionKey`, `registered` says whether the version exists in the registry.
    """
    partial = request.component is not None
    if isinstance(key, RevisionKey) and found is None:
        raise NotFound(f"release {key.revision} does not exist")
    if isinstance(key, VersionKey):
        if not registered:
            raise NotFound(f"version {key.ref} is not registered")
        if found is None or partial:
            target = {**stable.components, key.component: key.ref}
            return RollbackPlan(target, diff_components(stable.components, target), None, partial)
    assert found is not None
    if not partial:
        target = dict(found.components)
        return RollbackPlan(target, diff_components(stable.components, target), found.revision)
    name = request.component
    assert name is not None
    if name not in stable.components and name not in found.components:
        raise NotFound(
            f"component {name!r} is in neither release {stable.revision} "
            f"({', '.join(sorted(stable.components))}) nor release {found.revision} "
            f"({', '.join(sorted(found.components))})"
        )
    target = dict(stable.components)
    if name in found.components:
        target[name] = found.components[name]
    elif name == PRIMARY:
        raise Conflict(f"release {found.revision} has no {PRIMARY!r} component")
    else:
        del target[name]
    return RollbackPlan(target, diff_components(stable.components, target), found.revision, True)
