"""Heartbeats keep the time the lateness watcher must next look at them (`check_at`, indexed),
so its poll reads only the heartbeats due. Existing heartbeats are due at once: the watcher's
first look sets each one's next time.

Revision ID: pinger_0005
Revises: pinger_0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from pingtower.common.db import UtcDateTime

revision: str = "pinger_0005"
down_revision: str | None = "pinger_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("heartbeats", sa.Column("check_at", UtcDateTime(), nullable=True))
    op.create_index("ix_heartbeats_check_at", "heartbeats", ["check_at"])
    heartbeats = sa.table("heartbeats", sa.column("check_at", UtcDateTime()))
    op.execute(heartbeats.update().values(check_at=datetime.now(UTC)))


def downgrade() -> None:
    op.drop_index("ix_heartbeats_check_at", table_name="heartbeats")
    with op.batch_alter_table("heartbeats") as batch:
        batch.drop_column("check_at")
