from pathlib import Path

import pytest

from mlops.core.resources import one_location
from mlops.errors import InvalidInput


def test_one_location_names_the_driver_of_the_one_given() -> None:
    assert one_location(sqlite=Path("f.db"), postgresql=None, directory=None) == ("sqlite", "f.db")
    assert one_location(sqlite=None, postgresql="postgresql://h/db", directory=None) == (
        "postgresql",
        "postgresql://h/db",
    )
    assert one_location(sqlite=None, postgresql=None, directory="d") == ("directory", "d")


def test_none_or_two_locations_are_refused_in_the_callers_spelling() -> None:
    with pytest.raises(InvalidInput, match=r"^give exactly one of sqlite, postgresql or directory"):
        one_location(sqlite=None, postgresql=None, directory=None)
    with pytest.raises(InvalidInput, match="one of --sqlite, --postgresql or --directory"):
        one_location(sqlite="a.db", postgresql=None, directory="d", spelled="--")
