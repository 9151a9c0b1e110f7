"""data resource retention, snapshot details

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 14:25:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("data_resources") as batch:
        batch.add_column(sa.Column("retention", sa.JSON(), nullable=True))
    with op.batch_alter_table("snapshots") as batch:
        batch.add_column(sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("details")
    with op.batch_alter_table("data_resources") as batch:
        batch.drop_column("retention")
