"""Initial Notificator schema: monitor projection, channels, rules, alerts, delivery queue and
log, outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pingtower.common.db import BigId, UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False, unique=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("sent_at", UtcDateTime, nullable=True),
    )
    op.create_index("ix_outbox_unsent", "outbox", ["sent_at", "id"])
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("processed_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id"),
    )
    op.create_table(
        "monitors",
        sa.Column("monitor_id", sa.Uuid, primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("parent_id", sa.Uuid, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_changed_at", UtcDateTime, nullable=True),
        sa.Column("recent_changes", sa.JSON, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_monitors_tenant", "monitors", ["tenant"])
    op.create_table(
        "channels",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("secrets", sa.Text, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("rate_limit_per_minute", sa.Integer, nullable=True),
        sa.Column("quiet_hours", sa.JSON, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_channels_tenant_created", "channels", ["tenant", "created_at", "id"])
    op.create_table(
        "channel_sends",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("channel_id", sa.Uuid, nullable=False),
        sa.Column("sent_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_channel_sends_channel_sent", "channel_sends", ["channel_id", "sent_at"])
    op.create_table(
        "rules",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("monitor_ids", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("channel_ids", sa.JSON, nullable=False),
        sa.Column("delay_seconds", sa.Integer, nullable=False),
        sa.Column("reminder_interval_seconds", sa.Integer, nullable=False),
        sa.Column("reminder_count", sa.Integer, nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("flap_threshold", sa.Integer, nullable=False),
        sa.Column("flap_window_seconds", sa.Integer, nullable=False),
        sa.Column("group_window_seconds", sa.Integer, nullable=False),
        sa.Column("escalation_channel_ids", sa.JSON, nullable=False),
        sa.Column("escalate_after_seconds", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_rules_tenant_created", "rules", ["tenant", "created_at", "id"])
    op.create_table(
        "silences",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("monitor_ids", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("starts_at", UtcDateTime, nullable=False),
        sa.Column("ends_at", UtcDateTime, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_silences_tenant_ends", "silences", ["tenant", "ends_at"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("rule_id", sa.Uuid, nullable=False),
        sa.Column("monitor_id", sa.Uuid, nullable=False),
        sa.Column("open_key", sa.String(80), nullable=True, unique=True),
        sa.Column("problem", sa.String(20), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("quiet_after", UtcDateTime, nullable=True),
        sa.Column("opened_at", UtcDateTime, nullable=False),
        sa.Column("resolved_at", UtcDateTime, nullable=True),
        sa.Column("acknowledged_at", UtcDateTime, nullable=True),
        sa.Column("acknowledged_by", sa.String(200), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_alerts_monitor_status", "alerts", ["monitor_id", "status"])
    op.create_index(
        "ix_alerts_tenant_status_opened", "alerts", ["tenant", "status", "opened_at", "id"]
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column(
            "alert_id", sa.Uuid, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("rule_id", sa.Uuid, nullable=False),
        sa.Column("monitor_id", sa.Uuid, nullable=False),
        sa.Column("channel_id", sa.Uuid, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("group_key", sa.String(80), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("due_at", UtcDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(100), nullable=True),
        sa.Column("claimed_until", UtcDateTime, nullable=True),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.UniqueConstraint(
            "alert_id", "channel_id", "kind", "sequence", name="uq_deliveries_once"
        ),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "due_at"])
    op.create_index("ix_deliveries_tenant_created", "deliveries", ["tenant", "created_at", "id"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id",
            sa.Uuid,
            sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(100), nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_delivery_attempts_delivery", "delivery_attempts", ["delivery_id", "attempt"]
    )


def downgrade() -> None:
    for table in (
        "delivery_attempts",
        "deliveries",
        "alerts",
        "silences",
        "rules",
        "channel_sends",
        "channels",
        "monitors",
        "inbox",
        "outbox",
    ):
        op.drop_table(table)
