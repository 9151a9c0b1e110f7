import pytest

from mlops.core.routing import Split, unit_hash
from mlops.errors import InvalidInput

KEYS = [f"user-{i}" for i in range(20_000)]


def assignment(split: Split) -> dict[str, int]:
    return {key: split.pick(key, 0.5) for key in KEYS}


def test_sticky_keys_stay_on_their_revision() -> None:
    split = Split(((1, 50.0), (2, 50.0)))
    first = assignment(split)
    assert first == assignment(Split(((1, 50.0), (2, 50.0))))


@pytest.mark.parametrize("candidate", [1.0, 5.0, 10.0, 50.0])
def test_keys_split_in_proportion_to_weights(candidate: float) -> None:
    split = Split(((1, 100.0 - candidate), (2, candidate)))
    share = sum(rev == 2 for rev in assignment(split).values()) / len(KEYS)
    # binomial standard deviation at 20,000 keys is at most 0.35 %; allow four of them
    assert abs(share - candidate / 100.0) < 0.015


def test_growing_a_weight_moves_only_keys_to_that_revision() -> None:
    before = assignment(Split(((1, 90.0), (2, 10.0))))
    after = assignment(Split(((1, 75.0), (2, 25.0))))
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(before[k] == 1 and after[k] == 2 for k in moved)
    assert abs(len(moved) / len(KEYS) - 0.15) < 0.015


def test_adding_a_third_revision_takes_keys_from_both_without_shuffling_them() -> None:
    before = assignment(Split(((1, 50.0), (2, 50.0))))
    after = assignment(Split(((1, 40.0), (2, 40.0), (3, 20.0))))
    assert all(after[k] in (before[k], 3) for k in KEYS)


def test_requests_without_a_key_follow_the_draw() -> None:
    split = Split(((1, 80.0), (2, 20.0)))
    assert split.pick(None, 0.1) == 1
    assert split.pick(None, 0.85) == 2
    assert Split.only(7).pick(None, 0.99) == 7


def test_shadow_share_and_stickiness() -> None:
    split = Split(((1, 100.0),), ((2, 10.0),))
    copied = [k for k in KEYS if split.shadow_targets(k, 0.5)]
    assert abs(len(copied) / len(KEYS) - 0.10) < 0.015
    assert all(split.shadow_targets(k, 0.0) == (2,) for k in copied[:100])
    assert split.shadow_targets(None, 0.05) == (2,)
    assert split.shadow_targets(None, 0.5) == ()


@pytest.mark.parametrize(
    ("weights", "shadows", "message"),
    [
        ({}, {}, "at least one"),
        ({1: 60.0, 2: 30.0}, {}, "add up to 90"),
        ({1: 120.0}, {}, "not a percentage"),
        ({0: 100.0}, {}, "invalid revision"),
        ({1: 100.0}, {1: 10.0}, "live and shadow"),
    ],
)
def test_invalid_splits_are_refused(
    weights: dict[int, float], shadows: dict[int, float], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        Split(tuple(weights.items()), tuple(shadows.items()))


def test_split_round_trips_through_its_dict() -> None:
    split = Split(((3, 90.0), (4, 10.0)), ((5, 25.0),))
    assert Split.from_dict(split.to_dict()) == split
    assert split.revisions == {3, 4, 5}


def test_unit_hash_is_uniform_and_in_range() -> None:
    values = [unit_hash(k, "s") for k in KEYS]
    assert all(0.0 < v < 1.0 for v in values)
    assert abs(sum(values) / len(values) - 0.5) < 0.01
