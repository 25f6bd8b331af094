"""A check result is stored under its own key, (finished_at, check_id), which a redelivered
result carries unchanged: the evaluator looks the batch's keys up and drops those already
stored, instead of claiming every message id in an inbox.

The inbox kept a row per result for 7 days (at 50,000 monitors every 30 s, 161 bytes a row:
about 160 GB), where the key's index replaces the index on finished_at alone (33 bytes more
per result, kept for the results' window of 48 hours by default). Time first, as statistics'
results: each insert lands on the index's newest pages, which stay cached.

The inbox made the pairs unique already (a result is published once, and a copy keeps the
message id it claimed), so the unique index is built over what is stored.

Revision ID: pinger_0007
Revises: pinger_0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pingtower.common.db import UtcDateTime

revision: str = "pinger_0007"
down_revision: str | None = "pinger_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "uq_check_results_key", "check_results", ["finished_at", "check_id"], unique=True
    )
    op.drop_index("ix_check_results_finished_at", table_name="check_results")
    op.drop_table("inbox")


def downgrade() -> None:
    # Empty: a result redelivered after the downgrade is told from a new one by its message id
    # only from then on (the results stored meanwhile were claimed by their key).
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("processed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id"),
    )
    op.create_index("ix_check_results_finished_at", "check_results", ["finished_at"])
    op.drop_index("uq_check_results_key", table_name="check_results")
