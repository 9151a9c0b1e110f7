"""`Tx` is composed of one repository per concern: no repository shadows another's method,
and the records the new repository methods take are frozen."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from mlops.store.changes import ChangeRepo
from mlops.store.leases import Lease
from mlops.store.measurements import LoggedAnswer, MeasurementRecord, MeasurementRow
from mlops.store.outbox import OutboxRow
from mlops.store.rollouts import CommandRow, RolloutRow
from mlops.store.snapshots import NewSnapshot, SnapshotRow
from mlops.store.store import Tx
from mlops.store.transaction import Transaction

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _own_methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items() if callable(value) and name != "__init__"}


def test_each_method_of_tx_is_defined_by_one_repository() -> None:
    shared = {Transaction, ChangeRepo, object}
    owners: dict[str, list[str]] = {}
    for cls in Tx.__mro__:
        if cls in shared or cls is Tx:
            continue
        for name in _own_methods(cls):
            owners.setdefault(name, []).append(cls.__name__)
    assert {name: who for name, who in owners.items() if len(who) > 1} == {}


def test_tx_keeps_the_methods_its_callers_use() -> None:
    for name in (
        "deployment",
        "append_release",
        "make_stable",
        "insert_event",
        "active_rollout",
        "take_lease",
        "measurement_rows",
        "snapshot_rows",
        "specs_with_undelivered",
        "bump_change_seq",
        "insert_new",
        "upsert",
    ):
        assert callable(getattr(Tx, name)), name


@pytest.mark.parametrize(
    "record",
    [
        Lease("controller", "a", T0, 1),
        LoggedAnswer(1, "r1", 2, "live", [1.0], T0),
        MeasurementRecord(1, 2, "live", "w", T0, T0, 1, {}, {}, {}),
        OutboxRow(1, 2, "log:a", {}, 0, T0, None),
        MeasurementRow(1, 2, "live", "w", T0, T0, 1, {}, {}, {}, id=7),
        RolloutRow(1, 1, 2, 1, "canary", {}, "progressing", 0, {}, None, T0, T0, None),
        CommandRow(1, 1, "abort", {}, "me", None, T0),
        NewSnapshot(1, 2, "db", "sqlite", "/x", "ab", 1, "ready", T0, None, {}),
        SnapshotRow(1, 2, "db", "sqlite", "/x", "ab", 1, "ready", T0, None, {}, id=3),
    ],
)
def test_store_records_are_frozen(record: object) -> None:
    field = dataclasses.fields(record)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, field, None)
