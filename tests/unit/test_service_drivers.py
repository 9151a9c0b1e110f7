"""The snapshot drivers a service is given: the built-in ones by kind, or a map of them."""

from __future__ import annotations

import pytest

from mlops.errors import BadReference
from mlops.service import BuiltinDrivers, DriverMap, SnapshotDrivers
from mlops.snapshots.fake import MemorySnapshot


def test_the_builtin_drivers_are_found_by_kind() -> None:
    drivers: SnapshotDrivers = BuiltinDrivers()
    assert drivers.driver("sqlite").name == "sqlite"
    assert drivers.driver("directory").name == "directory"
    with pytest.raises(BadReference, match="unknown data resource driver 'memory'"):
        drivers.driver("memory")


def test_a_map_gives_its_own_drivers_and_refuses_others() -> None:
    fake = MemorySnapshot()
    drivers: SnapshotDrivers = DriverMap({"memory": fake})
    assert drivers.driver("memory") is fake
    with pytest.raises(BadReference, match="known: memory"):
        drivers.driver("sqlite")
