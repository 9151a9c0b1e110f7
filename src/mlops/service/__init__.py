"""Every operation, once. The CLI, the Python API, the gateway and the controller call these
through the one `Service` facade.

Each write runs in one store transaction: it reads what it needs by key, asks the pure core
for a decision, and writes the outcome with its event, or raises and writes nothing. The
operations live by concern: `registry`, `releases` (with `revisions`), `rollouts` (with
`rollout_actions` and `ending`), `data` and `restores` (with `snapshotting`, `migration`,
`processes`), `history`, `measurements`, `tokens` (with `authn`), and `dryrun`.
"""

from __future__ import annotations

from mlops.core.limits import HISTORY_LIMIT, LIST_MAX
from mlops.service.base import REASON_MAX, check_reason, utcnow
from mlops.service.dashboard import DashboardOps
from mlops.service.drivers import BuiltinDrivers, DriverMap, SnapshotDrivers
from mlops.service.ending import end_rollout
from mlops.service.history import HistoryOps
from mlops.service.measurements import MeasurementOps
from mlops.service.releases import TRIGGERS
from mlops.service.restores import mark_restores, planned_restores
from mlops.service.rollouts import COMMANDS
from mlops.service.sessions import SessionOps
from mlops.service.tokens import TokenOps

__all__ = [
    "COMMANDS",
    "HISTORY_LIMIT",
    "LIST_MAX",
    "REASON_MAX",
    "TRIGGERS",
    "BuiltinDrivers",
    "DriverMap",
    "Service",
    "SnapshotDrivers",
    "check_reason",
    "end_rollout",
    "mark_restores",
    "planned_restores",
    "utcnow",
]


class Service(DashboardOps, HistoryOps, MeasurementOps, TokenOps, SessionOps):
    """Every operation on one store: registry, releases, rollouts, data, measurements.

    `Service(settings, store=..., clock=..., snapshot_drivers=...)`; the snapshot drivers
    default to the real ones (`BuiltinDrivers`).
    """
