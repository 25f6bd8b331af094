"""Maintenance windows may recur by cron expression.

Revision ID: pinger_0003
Revises: pinger_0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "pinger_0003"
down_revision: str | None = "pinger_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("maintenance_windows", sa.Column("cron", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.drop_column("cron")
