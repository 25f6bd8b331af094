"""Statistics: rollup cells are keyed time first; hour and day cells keep an index by monitor.

The key was (monitor_id, resolution, bucket_start, region): each result's new minute cell went
into it beside that monitor's earlier cells, on a page of its own among 50,000 monitors'
(a page written to the WAL, then checkpointed, per result), and the key grew with the 7 days
of minute cells kept. Keyed (resolution, bucket_start, monitor_id, region), a minute's cells
go to one part of the key together, and `ix_rollups_time` (resolution, bucket_start) is the
key's first columns. Readers find a monitor's minute cells by each minute's key, its hour and
day cells through `ix_rollups_monitor`, which holds no minute cell.

On SQLite the key is part of the table, which batch mode copies into a new one (every cell:
the upgrade of a large embedded install takes a while, as a VACUUM would); on PostgreSQL the
key's constraint is replaced in place (its index built again).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
import structlog
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME_FIRST = ["resolution", "bucket_start", "monitor_id", "region"]
MONITOR_FIRST = ["monitor_id", "resolution", "bucket_start", "region"]
COARSE = sa.text("resolution != 'minute'")


def _rekey(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("rollups_pkey", "rollups", type_="primary")
        op.create_primary_key("rollups_pkey", "rollups", columns)
        return
    # The copy is one statement that reports nothing while it runs; say how much it copies.
    cells = op.get_bind().execute(sa.text("SELECT count(*) FROM rollups")).scalar_one()
    if cells:
        structlog.get_logger("pingtower.migrations").info(
            "copying the rollup cells into a table with the new key",
            database="statistics",
            cells=cells,
        )
    with op.batch_alter_table("rollups", recreate="always") as batch:
        batch.create_primary_key("rollups_pkey", columns)


def upgrade() -> None:
    op.drop_index("ix_rollups_time", table_name="rollups")
    _rekey(TIME_FIRST)
    op.create_index(
        "ix_rollups_monitor",
        "rollups",
        ["monitor_id", "resolution", "bucket_start"],
        sqlite_where=COARSE,
        postgresql_where=COARSE,
    )


def downgrade() -> None:
    op.drop_index("ix_rollups_monitor", table_name="rollups")
    _rekey(MONITOR_FIRST)
    op.create_index("ix_rollups_time", "rollups", ["resolution", "bucket_start"])
