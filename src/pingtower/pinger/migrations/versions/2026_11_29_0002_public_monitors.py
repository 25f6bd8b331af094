"""Monitors can be shown on the workspace's public status page.

Revision ID: pinger_0002
Revises: pinger_0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "pinger_0002"
down_revision: str | None = "pinger_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "monitors",
        sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("monitors") as batch:
        batch.drop_column("public")
