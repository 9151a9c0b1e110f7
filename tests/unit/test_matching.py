"""Whether a served answer matches its delayed label (or the live answer a shadow copies)."""

from __future__ import annotations

import pytest

from mlops.core.matching import matches


@pytest.mark.parametrize(
    ("prediction", "label", "expected"),
    [
        ([1], 1, True),  # one row: its one item
        ([1.0], 1, True),  # numbers compare as numbers
        ([0], 1, False),
        (["cat"], "cat", True),
        ([1, 2], [1, 2], True),  # a list label compares with the whole list
        ([1, 2], 1, False),
        (3, "3", True),  # a label sent as text
        (True, 1.0, True),
        ("a", "b", False),
    ],
)
def test_matches(prediction: object, label: object, expected: bool) -> None:
    assert matches(prediction, label) is expected
