import pytest

from mlops.core.restores import PlannedRestore, TakenSnapshot, plan_restores
from mlops.errors import Conflict


def test_the_snapshot_before_the_first_undone_migration_of_each_resource() -> None:
    undone = [
        TakenSnapshot(7, "features", 4),
        TakenSnapshot(5, "features", 3),
        TakenSnapshot(6, "lookups", 3),
        TakenSnapshot(8, "gone", 4),
    ]
    plan = plan_restores(undone, {"features": "restore", "lookups": "keep"}, "api")
    assert plan == [
        PlannedRestore(TakenSnapshot(5, "features", 3), "restore"),
        PlannedRestore(TakenSnapshot(8, "gone", 4), "keep"),  # no longer declared: kept
        PlannedRestore(TakenSnapshot(6, "lookups", 3), "keep"),
    ]


def test_freeze_refuses_the_rollback() -> None:
    with pytest.raises(Conflict, match="policy freeze: release 3 changed it"):
        plan_restores([TakenSnapshot(1, "ledger", 3)], {"ledger": "freeze"}, "api")
    assert plan_restores([], {"ledger": "freeze"}, "api") == []
