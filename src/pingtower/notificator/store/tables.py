"""Tables of the Notificator's database (SQLAlchemy Core, portable PostgreSQL / SQLite)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)

from pingtower.common.db import BigId, UtcDateTime
from pingtower.common.messaging.inbox import inbox_table
from pingtower.common.messaging.outbox import outbox_table

metadata = MetaData()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

# Local projection of the Pinger's monitors, from monitor.* events.
monitors = Table(
    "monitors",
    metadata,
    Column("monitor_id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("type", String(50), nullable=False),
    Column("target", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("parent_id", Uuid, nullable=True),
    Column("status", String(20), nullable=False),
    # When the status last changed: older status events (out of order) are ignored.
    Column("status_changed_at", UtcDateTime, nullable=True),
    # Recent status change times (ISO strings, newest last), for flap damping.
    Column("recent_changes", JSON, nullable=False, default=list),
    # State of the check-result rules (latency streaks, certificates told about) by rule id;
    # NULL for the monitors no such rule selects.
    Column("check_state", JSON, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

channels = Table(
    "channels",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(50), nullable=False),
    Column("settings", JSON, nullable=False),  # everything but the secrets
    Column("secrets", Text, nullable=True),  # Fernet token of the secret fields (JSON)
    Column("enabled", Boolean, nullable=False),
    Column("rate_limit_per_minute", Integer, nullable=True),  # NULL: unlimited
    Column("quiet_hours", JSON, nullable=True),  # {"start", "end", "timezone"}; NULL: none
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_channels_tenant_created", "tenant", "created_at", "id"),
)

# One row per message sent to a channel (a group counts once): the rate limit's window.
channel_sends = Table(
    "channel_sends",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("channel_id", Uuid, nullable=False),
    Column("sent_at", UtcDateTime, nullable=False),
    Index("ix_channel_sends_channel_sent", "channel_id", "sent_at"),
)

rules = Table(
    "rules",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("monitor_ids", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("events", JSON, nullable=False),
    Column("channel_ids", JSON, nullable=False),
    Column("delay_seconds", Integer, nullable=False),
    Column("reminder_interval_seconds", Integer, nullable=False),
    Column("reminder_count", Integer, nullable=False),
    Column("severity", String(20), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("flap_threshold", Integer, nullable=False),
    Column("flap_window_seconds", Integer, nullable=False),
    Column("group_window_seconds", Integer, nullable=False),
    Column("escalation_channel_ids", JSON, nullable=False),
    Column("escalate_after_seconds", Integer, nullable=False),
    Column("latency_threshold_ms", Float, nullable=True),
    Column("latency_checks", Integer, nullable=False, server_default="3"),
    Column("cert_expiry_days", JSON, nullable=False, server_default="[]"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_rules_tenant_created", "tenant", "created_at", "id"),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("monitor_ids", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_silences_tenant_ends", "tenant", "ends_at"),
)

# One alert per (rule, monitor) while open: `open_key` is "<rule>:<monitor>" while open and NULL
# once resolved; NULLs never collide in a UNIQUE column, on both databases. Latency and
# certificate alerts add ":lat" / ":crt" to the key, so they live beside a down alert. An SLO
# alert is a one-off notice (resolved as it opens); for an SLO over a tag, `monitor_id` holds the
# SLO's id, since no single monitor is concerned.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("rule_id", Uuid, nullable=False),
    Column("monitor_id", Uuid, nullable=False),
    Column("open_key", String(80), nullable=True, unique=True),
    # down | degraded | flapping | latency | cert_expiring | slo
    Column("problem", String(20), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("status", String(20), nullable=False),  # open | resolved
    # A flapping alert closes by itself when nothing changed until then.
    Column("quiet_after", UtcDateTime, nullable=True),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("acknowledged_by", String(200), nullable=True),
    Column("error", Text, nullable=True),
    # The Pinger's incident behind a down alert (from the status change or incident.opened).
    Column("incident_id", Uuid, nullable=True),
    Index("ix_alerts_monitor_status", "monitor_id", "status"),
    Index("ix_alerts_tenant_status_opened", "tenant", "status", "opened_at", "id"),
)

# The delivery queue and log. The unique key makes "decide to send" idempotent.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("alert_id", Uuid, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("rule_id", Uuid, nullable=False),
    Column("monitor_id", Uuid, nullable=False),
    Column("channel_id", Uuid, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("sequence", Integer, nullable=False),
    # Rows with the same (channel, kind, group key) waiting together are sent as one message.
    Column("group_key", String(80), nullable=True),
    # pending -> sending (claimed, leased) -> delivered | failed; pending -> cancelled
    Column("status", String(20), nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("claimed_by", String(100), nullable=True),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("context", JSON, nullable=False),  # what the message is rendered from
    Column("last_error", Text, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    UniqueConstraint("alert_id", "channel_id", "kind", "sequence", name="uq_deliveries_once"),
    Index("ix_deliveries_due", "status", "due_at"),
    Index("ix_deliveries_tenant_created", "tenant", "created_at", "id"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", Uuid, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(100), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_delivery_attempts_delivery", "delivery_id", "attempt"),
)
