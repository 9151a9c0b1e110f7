"""predictions and labels keyed by deployment, one label per request

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 16:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Labels kept so far were accepted for any request id; the join to predictions decides which
# of them count, exactly as before, now within their own deployment.
KEYS = {
    "predictions": (["deployment_id", "request_id", "role"], ["request_id", "role"]),
    "feedback": (["deployment_id", "request_id"], ["request_id"]),
}


def _rekey(new: bool) -> None:
    for table, (upgraded, original) in KEYS.items():
        with op.batch_alter_table(table, recreate="always") as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", upgraded if new else original)


def upgrade() -> None:
    _rekey(True)


def downgrade() -> None:
    _rekey(False)
