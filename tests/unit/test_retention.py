from datetime import UTC, datetime, timedelta

import pytest

from mlops.core.retention import RetainedSnapshot, RetentionPolicy, decide_expired, expires_at
from mlops.errors import InvalidInput

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def snaps(
    resource: str, ages_h: list[int], pinned: set[int] | None = None
) -> list[RetainedSnapshot]:
    return [
        RetainedSnapshot(
            f"{resource}-{age}", resource, NOW - timedelta(hours=age), age in (pinned or set())
        )
        for age in ages_h
    ]


def test_keep_last_keeps_the_newest_per_resource() -> None:
    found = snaps("features", [1, 5, 3, 9]) + snaps("lookup", [2, 4])
    expired = decide_expired(found, RetentionPolicy(keep_last=2), NOW)
    assert expired == ["features-9", "features-5"]


def test_max_age_deletes_what_is_older_and_sets_expires_at() -> None:
    policy = RetentionPolicy(max_age=timedelta(hours=4))
    expired = decide_expired(snaps("features", [1, 3, 5, 8]), policy, NOW)
    assert expired == ["features-8", "features-5"]
    assert expires_at(NOW, policy) == NOW + timedelta(hours=4)
    assert expires_at(NOW, RetentionPolicy(keep_last=3)) is None


def test_either_limit_deletes_and_pinned_snapshots_are_never_chosen() -> None:
    policy = RetentionPolicy(keep_last=2, max_age=timedelta(hours=4))
    found = snaps("features", [1, 2, 3, 10, 20], pinned={3, 20})
    assert decide_expired(found, policy, NOW) == ["features-10"]


def test_no_limit_keeps_everything() -> None:
    assert decide_expired(snaps("features", [1, 100, 1000]), RetentionPolicy(), NOW) == []


@pytest.mark.parametrize(
    "kwargs", [{"keep_last": 0}, {"max_age": timedelta(0)}, {"max_age": timedelta(hours=-1)}]
)
def test_a_policy_that_would_delete_everything_at_once_is_refused(
    kwargs: dict[str, object],
) -> None:
    with pytest.raises(InvalidInput):
        RetentionPolicy(**kwargs)  # type: ignore[arg-type]
