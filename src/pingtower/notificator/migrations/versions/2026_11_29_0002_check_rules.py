"""Check-result rules (latency, certificate expiry), their per-monitor state, and the incident
an alert belongs to.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs (nullable or with a server default): no table rebuild on SQLite, which
    # would cascade-delete the deliveries of every alert with foreign keys on.
    op.add_column("rules", sa.Column("latency_threshold_ms", sa.Float, nullable=True))
    op.add_column(
        "rules", sa.Column("latency_checks", sa.Integer, nullable=False, server_default="3")
    )
    op.add_column(
        "rules", sa.Column("cert_expiry_days", sa.JSON, nullable=False, server_default="[]")
    )
    op.add_column("monitors", sa.Column("check_state", sa.JSON, nullable=True))
    op.add_column("alerts", sa.Column("incident_id", sa.Uuid, nullable=True))


def downgrade() -> None:
    op.drop_column("alerts", "incident_id")
    op.drop_column("monitors", "check_state")
    op.drop_column("rules", "cert_expiry_days")
    op.drop_column("rules", "latency_checks")
    op.drop_column("rules", "latency_threshold_ms")
