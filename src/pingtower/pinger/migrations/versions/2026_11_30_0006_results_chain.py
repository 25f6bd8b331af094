"""A monitor's results are listed through a chain instead of an index by monitor: each result
names its monitor's result stored before it (`check_results.previous_id`), and the monitor's
state row the newest (`monitor_states.last_stored_result_id`).

The index (monitor_id, id) put every result's insert on a random page, one per monitor: at
50,000 monitors the evaluator read and wrote a page it had no room to cache for each result,
a third of its work (bench.evaluator_batches --stored; bench/README.md, performance round 16).
Existing results are chained here (through that index, dropped after).

Revision ID: pinger_0006
Revises: pinger_0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pingtower.common.db import BigId

revision: str = "pinger_0006"
down_revision: str | None = "pinger_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("check_results", sa.Column("previous_id", BigId, nullable=True))
    op.add_column("monitor_states", sa.Column("last_stored_result_id", BigId, nullable=True))
    op.execute(
        "UPDATE check_results SET previous_id = (SELECT max(p.id) FROM check_results p "
        "WHERE p.monitor_id = check_results.monitor_id AND p.id < check_results.id)"
    )
    op.execute(
        "UPDATE monitor_states SET last_stored_result_id = (SELECT max(r.id) FROM "
        "check_results r WHERE r.monitor_id = monitor_states.monitor_id)"
    )
    op.drop_index("ix_check_results_monitor", table_name="check_results")


def downgrade() -> None:
    op.create_index("ix_check_results_monitor", "check_results", ["monitor_id", "id"])
    with op.batch_alter_table("monitor_states") as batch:
        batch.drop_column("last_stored_result_id")
    with op.batch_alter_table("check_results") as batch:
        batch.drop_column("previous_id")
