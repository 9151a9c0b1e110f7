import pytest

from mlops.core.refs import ComponentRef
from mlops.core.release import (
    ComponentChange,
    Release,
    RevisionKey,
    RollbackRequest,
    VersionKey,
    diff_components,
    plan_deploy,
    plan_rollback,
    rollback_key,
)
from mlops.errors import BadReference, Conflict, NoRollbackTarget, NotFound

M1, M2, M3 = ComponentRef("m", 1), ComponentRef("m", 2), ComponentRef("m", 3)
P1, P2 = ComponentRef("prep", 1), ComponentRef("prep", 2)


def test_first_deploy_needs_the_primary_model() -> None:
    with pytest.raises(BadReference, match="--model"):
        plan_deploy(None, {"preprocessor": P1})
    plan = plan_deploy(None, {"model": M1})
    assert plan.components == {"model": M1}
    assert plan.changes == (ComponentChange("model", None, M1),)


def test_deploy_keeps_the_other_components() -> None:
    stable = Release(3, {"model": M1, "preprocessor": P1}, 2)
    plan = plan_deploy(stable, {"preprocessor": P2})
    assert plan.components == {"model": M1, "preprocessor": P2}
    assert [c.component for c in plan.changes] == ["preprocessor"]


def test_deploy_of_what_already_serves_changes_nothing() -> None:
    stable = Release(3, {"model": M1}, 2)
    assert plan_deploy(stable, {"model": M1}).changes == ()


def test_deploy_can_remove_a_component_but_not_the_primary() -> None:
    stable = Release(3, {"model": M1, "preprocessor": P1}, 2)
    assert plan_deploy(stable, {}, frozenset({"preprocessor"})).components == {"model": M1}
    with pytest.raises(BadReference, match="primary"):
        plan_deploy(stable, {}, frozenset({"model"}))
    with pytest.raises(NotFound, match="postprocessor"):
        plan_deploy(stable, {}, frozenset({"postprocessor"}))
    with pytest.raises(BadReference, match="nothing to deploy"):
        plan_deploy(stable, {})


def test_plain_rollback_goes_to_the_previous_stable_release() -> None:
    stable = Release(5, {"model": M3}, 4)
    key = rollback_key(stable, RollbackRequest())
    assert key == RevisionKey(4)
    plan = plan_rollback(stable, RollbackRequest(), key, Release(4, {"model": M2}, 3))
    assert plan.components == {"model": M2}
    assert plan.source_revision == 4
    assert not plan.partial


def test_first_release_has_nothing_to_roll_back_to() -> None:
    with pytest.raises(NoRollbackTarget):
        rollback_key(Release(1, {"model": M1}, None), RollbackRequest())


def test_rollback_to_a_revision_that_does_not_exist() -> None:
    stable = Release(5, {"model": M3}, 4)
    key = rollback_key(stable, RollbackRequest(revision=99))
    with pytest.raises(NotFound, match="release 99"):
        plan_rollback(stable, RollbackRequest(revision=99), key, None)


def test_version_rollback_restores_the_latest_release_that_served_it() -> None:
    stable = Release(5, {"model": M3, "preprocessor": P2}, 4)
    request = RollbackRequest(version=1)
    key = rollback_key(stable, request)
    assert key == VersionKey("model", M1)
    found = Release(2, {"model": M1, "preprocessor": P1}, 1)
    plan = plan_rollback(stable, request, key, found, registered=True)
    assert plan.components == {"model": M1, "preprocessor": P1}
    assert plan.source_revision == 2


def test_version_rollback_to_a_version_never_served_builds_a_new_release() -> None:
    stable = Release(5, {"model": M3, "preprocessor": P2}, 4)
    request = RollbackRequest(version=2)
    key = rollback_key(stable, request)
    plan = plan_rollback(stable, request, key, None, registered=True)
    assert plan.components == {"model": M2, "preprocessor": P2}
    assert plan.source_revision is None
    with pytest.raises(NotFound, match="not registered"):
        plan_rollback(stable, request, key, None, registered=False)


def test_partial_rollback_changes_one_component_only() -> None:
    stable = Release(5, {"model": M3, "preprocessor": P2}, 4)
    request = RollbackRequest(component="preprocessor")
    key = rollback_key(stable, request)
    found = Release(4, {"model": M2, "preprocessor": P1}, 3)
    plan = plan_rollback(stable, request, key, found)
    assert plan.components == {"model": M3, "preprocessor": P1}
    assert plan.partial
    assert plan.changes == (ComponentChange("preprocessor", P2, P1),)


def test_partial_rollback_of_a_component_the_old_release_lacked_removes_it() -> None:
    stable = Release(5, {"model": M3, "preprocessor": P2}, 4)
    request = RollbackRequest(component="preprocessor")
    plan = plan_rollback(
        stable, request, rollback_key(stable, request), Release(4, {"model": M3}, 3)
    )
    assert plan.components == {"model": M3}


def test_partial_rollback_of_an_unknown_component() -> None:
    stable = Release(5, {"model": M3}, 4)
    request = RollbackRequest(component="postprocessor")
    with pytest.raises(NotFound, match="postprocessor"):
        plan_rollback(stable, request, rollback_key(stable, request), Release(4, {"model": M2}, 3))
    with pytest.raises(NotFound, match="postprocessor"):
        rollback_key(stable, RollbackRequest(component="postprocessor", version=1))


def test_partial_rollback_of_the_primary_to_a_release_without_it() -> None:
    stable = Release(5, {"model": M3}, 4)
    request = RollbackRequest(component="model")
    with pytest.raises(Conflict):
        plan_rollback(stable, request, rollback_key(stable, request), Release(4, {"x": P1}, 3))


def test_version_and_revision_exclude_each_other() -> None:
    with pytest.raises(BadReference, match="exclude"):
        rollback_key(Release(2, {"model": M1}, 1), RollbackRequest(revision=1, version=1))


def test_diff_lists_added_removed_and_changed() -> None:
    changes = diff_components({"model": M1, "a": P1}, {"model": M2, "b": P1})
    assert [c.describe() for c in changes] == [
        "a: prep:1 -> -",
        "b: - -> prep:1",
        "model: m:1 -> m:2",
    ]
    assert changes[2].to_dict() == {"component": "model", "from": "m:1", "to": "m:2"}
