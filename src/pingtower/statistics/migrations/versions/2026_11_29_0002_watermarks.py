"""Statistics: the compaction watermark (minute cells folded into hour and day cells).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from pingtower.common.db import UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "watermarks",
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("folded_until", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # Databases from revision 0001 hold hour and day cells written at ingest for everything so
    # far, so nothing before the upgrade needs folding: the watermark starts at the next hour.
    now = datetime.now(UTC)
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    has_minutes = op.get_bind().execute(sa.text("SELECT 1 FROM rollups LIMIT 1")).first()
    start = next_hour if has_minutes else datetime(1970, 1, 1, tzinfo=UTC)
    op.bulk_insert(table, [{"name": "rollups", "folded_until": start}])


def downgrade() -> None:
    op.drop_table("watermarks")
