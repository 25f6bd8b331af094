"""The Pinger's tables (SQLAlchemy Core). The migration in `migrations/versions` creates exactly
these; a test compares the two.

- monitors: the definitions. Deleting sets `deleted_at` (a tombstone) so the scheduler, which
  polls `updated_at`, notices deletions the same way it notices changes.
- monitor_tags: one row per tag, so "has tag X" is a portable indexed query.
- monitor_states: what the evaluator decides, one row per monitor, locked while a result applies.
- check_results: recent raw results, pruned after the retention window. Each names the result
  of its monitor stored before it (`previous_id`), and the monitor's state row the newest
  (`last_stored_result_id`): a monitor's results are listed by following that chain, where an
  index by monitor put every insert on a random page (migration 0006). A result's key,
  (finished_at, check_id), is unique: a redelivered result finds itself stored and is dropped
  (migration 0007; the Pinger has no inbox).
- heartbeats: push monitors' ping key, the times of their last ping, run and lateness, and when
  the lateness watcher must next look at them.
- maintenance_windows: one-off, weekly and cron windows during which failures open no incident.
"""

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
    Uuid,
    false,
)

from pingtower.common.db import BigId, UtcDateTime
from pingtower.common.messaging.outbox import outbox_table

metadata = MetaData()

monitors = Table(
    "monitors",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(32), nullable=False),
    Column("target", String(2048), nullable=False),
    Column("settings", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    Column("cron", String(120), nullable=True),  # instead of the interval, when set
    Column("timezone", String(64), nullable=False),  # of the cron expression
    Column("timeout_seconds", Float, nullable=False),
    Column("regions", JSON, nullable=False),
    Column("failures_before_down", Integer, nullable=False),
    Column("successes_before_up", Integer, nullable=False),
    Column("retry_interval_seconds", Integer, nullable=False),
    Column("failure_quorum", Integer, nullable=True),  # None: a majority of the regions
    Column("parent_id", Uuid, nullable=True),
    Column("paused", Boolean, nullable=False),
    Column("public", Boolean, nullable=False, server_default=false()),
    # {objective, window_days}, kept by Statistics; SQL NULL (not JSON null) when there is none
    Column("slo", JSON(none_as_null=True), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("deleted_at", UtcDateTime, nullable=True),
    Index("ix_monitors_tenant_created", "tenant", "created_at", "id"),
    Index("ix_monitors_updated_at", "updated_at"),
)

monitor_tags = Table(
    "monitor_tags",
    metadata,
    Column("monitor_id", Uuid, ForeignKey("monitors.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(100), primary_key=True),
    Index("ix_monitor_tags_tag", "tag"),
)

monitor_states = Table(
    "monitor_states",
    metadata,
    Column("monitor_id", Uuid, ForeignKey("monitors.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("status", String(16), nullable=False),
    Column("since", UtcDateTime, nullable=True),
    Column("consecutive_failures", Integer, nullable=False),
    Column("consecutive_successes", Integer, nullable=False),
    Column("incident_id", Uuid, nullable=True),
    Column("incident_started_at", UtcDateTime, nullable=True),
    Column("incident_cause", String(32), nullable=True),
    Column("incident_first_error", Text, nullable=True),
    Column("last_scheduled_at", UtcDateTime, nullable=True),
    # The round being collected from several regions: its scheduled time, region -> outcome.
    Column("round_scheduled_at", UtcDateTime, nullable=True),
    Column("round_outcomes", JSON, nullable=True),
    Column("last_result_id", BigId, nullable=True),
    Column("changed_at", UtcDateTime, nullable=False),
    # The newest result stored for the monitor, applied or not (a stale one too): the head of
    # its chain of results (check_results.previous_id)
    Column("last_stored_result_id", BigId, nullable=True),
    Index("ix_monitor_states_changed_at", "changed_at"),
    Index("ix_monitor_states_tenant_status", "tenant", "status"),
)

check_results = Table(
    "check_results",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("check_id", Uuid, nullable=False),
    Column("monitor_id", Uuid, nullable=False),
    Column("tenant", String(100), nullable=False),
    Column("region", String(64), nullable=False),
    Column("scheduled_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("latency_ms", Float, nullable=True),
    Column("error_kind", String(32), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("size_bytes", Integer, nullable=True),
    Column("phases_ms", JSON, nullable=False),
    Column("cert_expires_at", UtcDateTime, nullable=True),
    # The monitor's result stored just before this one (None for its first, and for results
    # stored before migration 0006 had it); that one may have been pruned since.
    Column("previous_id", BigId, nullable=True),
    # Time first: each insert lands on the index's newest pages (the pruning reads it too)
    Index("uq_check_results_key", "finished_at", "check_id", unique=True),
)

heartbeats = Table(
    "heartbeats",
    metadata,
    Column("monitor_id", Uuid, ForeignKey("monitors.id", ondelete="CASCADE"), primary_key=True),
    Column("ping_key", Uuid, nullable=False, unique=True),  # the secret in /ping/<key>
    Column("last_ping_at", UtcDateTime, nullable=True),
    Column("run_started_at", UtcDateTime, nullable=True),
    Column("reported_late_at", UtcDateTime, nullable=True),
    # When the lateness watcher must next look (NULL: never, while paused or deleted): its poll
    # reads only the rows due, by this index.
    Column("check_at", UtcDateTime, nullable=True),
    Index("ix_heartbeats_check_at", "check_at"),
)

maintenance_windows = Table(
    "maintenance_windows",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("monitor_ids", JSON, nullable=False),  # empty: every monitor of the workspace
    Column("kind", String(16), nullable=False),  # "once", "weekly" or "cron"
    Column("starts_at", UtcDateTime, nullable=True),
    Column("ends_at", UtcDateTime, nullable=True),
    Column("days", JSON, nullable=True),
    Column("start_time", String(8), nullable=True),
    Column("duration_minutes", Integer, nullable=True),
    Column("cron", String(200), nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_maintenance_windows_tenant", "tenant", "created_at"),
)

outbox = outbox_table(metadata)
