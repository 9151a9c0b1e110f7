"""The `SnapshotDrivers` plug point: which driver handles a data resource of a given kind.

The service is given one at construction; the default finds the real drivers by kind, and a
test passes `DriverMap({"memory": MemorySnapshot()})` to run restores with no database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from mlops.errors import BadReference
from mlops.snapshots import SnapshotDriver, driver_for


class SnapshotDrivers(Protocol):
    def driver(self, kind: str) -> SnapshotDriver:
        """The driver for resources of `kind`; BadReference when there is none."""
        ...


class BuiltinDrivers:
    """The drivers mlops ships (`sqlite`, `postgresql`, `directory`), made by `find`."""

    def __init__(self, find: Callable[[str], SnapshotDriver] = driver_for) -> None:
        self._find = find

    def driver(self, kind: str) -> SnapshotDriver:
        return self._find(kind)


class DriverMap:
    """Drivers given by kind, as made by the caller (fakes, or drivers with options)."""

    def __init__(self, drivers: Mapping[str, SnapshotDriver]) -> None:
        self._drivers = dict(drivers)

    def driver(self, kind: str) -> SnapshotDriver:
        try:
            return self._drivers[kind]
        except KeyError:
            raise BadReference(
                f"unknown data resource driver {kind!r}; known: {', '.join(sorted(self._drivers))}"
            ) from None
