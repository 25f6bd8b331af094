"""Initial Pinger schema: monitors, tags, states, recent results, heartbeats, maintenance
windows, outbox, inbox.

Revision ID: pinger_0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pingtower.common.db import BigId, UtcDateTime

revision: str = "pinger_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "monitors",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("target", sa.String(2048), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("cron", sa.String(120), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("regions", sa.JSON(), nullable=False),
        sa.Column("failures_before_down", sa.Integer(), nullable=False),
        sa.Column("successes_before_up", sa.Integer(), nullable=False),
        sa.Column("retry_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("failure_quorum", sa.Integer(), nullable=True),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_monitors_tenant_created", "monitors", ["tenant", "created_at", "id"])
    op.create_index("ix_monitors_updated_at", "monitors", ["updated_at"])

    op.create_table(
        "monitor_tags",
        sa.Column(
            "monitor_id",
            sa.Uuid(),
            sa.ForeignKey("monitors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(100), primary_key=True),
    )
    op.create_index("ix_monitor_tags_tag", "monitor_tags", ["tag"])

    op.create_table(
        "monitor_states",
        sa.Column(
            "monitor_id",
            sa.Uuid(),
            sa.ForeignKey("monitors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("since", UtcDateTime(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("consecutive_successes", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=True),
        sa.Column("incident_started_at", UtcDateTime(), nullable=True),
        sa.Column("incident_cause", sa.String(32), nullable=True),
        sa.Column("incident_first_error", sa.Text(), nullable=True),
        sa.Column("last_scheduled_at", UtcDateTime(), nullable=True),
        sa.Column("round_scheduled_at", UtcDateTime(), nullable=True),
        sa.Column("round_outcomes", sa.JSON(), nullable=True),
        sa.Column("last_result_id", BigId, nullable=True),
        sa.Column("changed_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_monitor_states_changed_at", "monitor_states", ["changed_at"])
    op.create_index("ix_monitor_states_tenant_status", "monitor_states", ["tenant", "status"])

    op.create_table(
        "check_results",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("check_id", sa.Uuid(), nullable=False),
        sa.Column("monitor_id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("scheduled_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error_kind", sa.String(32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("phases_ms", sa.JSON(), nullable=False),
        sa.Column("cert_expires_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_check_results_monitor", "check_results", ["monitor_id", "id"])
    op.create_index("ix_check_results_finished_at", "check_results", ["finished_at"])

    op.create_table(
        "heartbeats",
        sa.Column(
            "monitor_id",
            sa.Uuid(),
            sa.ForeignKey("monitors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("ping_key", sa.Uuid(), nullable=False, unique=True),
        sa.Column("last_ping_at", UtcDateTime(), nullable=True),
        sa.Column("run_started_at", UtcDateTime(), nullable=True),
        sa.Column("reported_late_at", UtcDateTime(), nullable=True),
    )

    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("monitor_ids", sa.JSON(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("starts_at", UtcDateTime(), nullable=True),
        sa.Column("ends_at", UtcDateTime(), nullable=True),
        sa.Column("days", sa.JSON(), nullable=True),
        sa.Column("start_time", sa.String(8), nullable=True),
        sa.Column("duration_minutes", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index(
        "ix_maintenance_windows_tenant", "maintenance_windows", ["tenant", "created_at"]
    )

    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False, unique=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_outbox_unsent", "outbox", ["sent_at", "id"])

    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("processed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id"),
    )


def downgrade() -> None:
    for table in (
        "inbox",
        "outbox",
        "maintenance_windows",
        "heartbeats",
        "check_results",
        "monitor_states",
        "monitor_tags",
        "monitors",
    ):
        op.drop_table(table)
