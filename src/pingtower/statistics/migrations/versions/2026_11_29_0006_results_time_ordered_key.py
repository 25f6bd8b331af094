"""Statistics: raw results keep one index besides their id, in time order.

A result is unique by its finish time and check id, in that order (it was check id first), and
`ix_results_time` and `ix_results_monitor_time` go. Every result inserted added an entry to
each of those B-trees, and the two keyed first by a random id (the check's, the monitor's)
each put it on a random page: on SQLite that was most of a batch's COMMIT (pages written to
the WAL, then checkpointed) and half of its inserts' CPU (bench/README.md, performance round
8). Time first, new entries land on the index's last pages, as they do on the rowid's. No
query reads results by monitor; retention's (finished before a time) and a replay's
conflict (both columns, which both databases match in any order) use the new key.

On SQLite the unique constraint is part of the table, which batch mode copies into a new one
(every row, ids kept); on PostgreSQL the constraint is rebuilt on every partition.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_results_monitor_time", table_name="results")
    op.drop_index("ix_results_time", table_name="results")
    with op.batch_alter_table("results") as batch:
        batch.drop_constraint("uq_results_check", type_="unique")
        batch.create_unique_constraint("uq_results_check", ["finished_at", "check_id"])


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_constraint("uq_results_check", type_="unique")
        batch.create_unique_constraint("uq_results_check", ["check_id", "finished_at"])
    op.create_index("ix_results_monitor_time", "results", ["monitor_id", "finished_at"])
    op.create_index("ix_results_time", "results", ["finished_at"])
