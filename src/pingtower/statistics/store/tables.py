"""The Statistics database: every table, with the outbox and the inbox.

Core tables rather than ORM classes: ingest is bulk inserts and upserts, reads are aggregates.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)

from pingtower.common.db import BigId, UtcDateTime
from pingtower.common.messaging.inbox import inbox_table
from pingtower.common.messaging.outbox import outbox_table

metadata = MetaData()

# Local projection of the Pinger's monitors, plus the latest facts seen about each one. A row
# appears with the first event about a monitor (a result may arrive before monitor.created).
monitors = Table(
    "monitors",
    metadata,
    Column("monitor_id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("type", String(50), nullable=False, default=""),
    Column("target", String(2000), nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=list),
    Column("public", Boolean, nullable=False, default=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("interval_seconds", Integer, nullable=True),
    # occurred_at of the monitor.* event applied last, so an older update arriving late loses.
    Column("definition_at", UtcDateTime, nullable=True),
    Column("deleted_at", UtcDateTime, nullable=True),
    Column("last_check_at", UtcDateTime, nullable=True),
    Column("last_outcome", String(20), nullable=True),
    Column("last_latency_ms", Float, nullable=True),
    Index("ix_monitors_tenant", "tenant", "monitor_id"),
)

# Raw results. On PostgreSQL the migration creates this table partitioned by day on finished_at
# (primary key (id, finished_at), as a partitioned table needs its key to hold the partition
# column), so retention drops whole partitions; see store/partitions.py. A result is unique by
# (finished_at, check_id): a replay carries both unchanged. Time first, so each insert adds to
# the index's last pages (a random id first put every result on a random page), and retention
# reads it; no query reads results by monitor (migration 0006).
results = Table(
    "results",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("check_id", Uuid, nullable=False),
    Column("monitor_id", Uuid, nullable=False),
    Column("region", String(100), nullable=False),
    Column("scheduled_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("latency_ms", Float, nullable=True),
    Column("error_kind", String(100), nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("phases", JSON, nullable=False, default=dict),
    UniqueConstraint("finished_at", "check_id", name="uq_results_check"),
)

# The condition of the index by monitor (on hour and day cells): a query must state it, as
# written here, for a planner to take that index.
COARSE_CELLS = "resolution != 'minute'"

rollups = Table(
    "rollups",
    metadata,
    Column("monitor_id", Uuid, nullable=False),
    Column("region", String(100), nullable=False),
    Column("resolution", String(10), nullable=False),
    Column("bucket_start", UtcDateTime, nullable=False),
    Column("tenant", String(100), nullable=False),
    Column("up", Integer, nullable=False, default=0),
    Column("degraded", Integer, nullable=False, default=0),
    Column("down", Integer, nullable=False, default=0),
    Column("latency_count", Integer, nullable=False, default=0),
    Column("latency_min", Float, nullable=True),
    Column("latency_max", Float, nullable=True),
    Column("latency_sum", Float, nullable=False, default=0.0),
    # flat JSON objects name -> number
    Column("phase_sums", JSON, nullable=False, default=dict),
    Column("phase_counts", JSON, nullable=False, default=dict),
    # Histogram.to_bytes(): dense bucket counts, decoded with one struct call
    Column("histogram", LargeBinary, nullable=False),
    # Figures of a finished hour or day cell (domain/cell_figures.py), written by compaction
    # once the watermark has passed the cell's end: its latency percentiles, and its
    # timeseries point as JSON without "at" (domain/series.py `fragment`; a change to the
    # point's fields needs a migration that rewrites it). They hold while the cell still has
    # figures_checks checks (up + degraded + down): a late result adds one, and readers then
    # compute from the histogram. NULL on minute cells and on cells still being folded.
    Column("figures_checks", Integer, nullable=True),
    Column("p50", Float, nullable=True),
    Column("p90", Float, nullable=True),
    Column("p95", Float, nullable=True),
    Column("p99", Float, nullable=True),
    Column("point_json", Text, nullable=True),
    # Time first, so a minute's new cells go to one part of the key together (monitor first,
    # each went to a page of that monitor's, most results to a page of their own: a quarter
    # to a third of ingest's CPU on SQLite at 50,000 monitors, bench/README.md round 18). A
    # monitor's minute cells are then read by each minute's key (queries.py `cells_in`); its
    # hour and day cells through the index by monitor, which leaves minute cells out and
    # which a query uses only with its condition (`COARSE_CELLS`). Migration 0007.
    PrimaryKeyConstraint("resolution", "bucket_start", "monitor_id", "region"),
    Index(
        "ix_rollups_monitor",
        "monitor_id",
        "resolution",
        "bucket_start",
        sqlite_where=text(COARSE_CELLS),
        postgresql_where=text(COARSE_CELLS),
    ),
)

# The last day compaction finished, per monitor and region: for each hour of it the latency
# histogram from that hour to the end of the day, with its latency count. The overview's
# 24 hours then read one of these, today's day cell and a few minute cells instead of up
# to 23 hour cells. A late result into that day makes the hour cells' counts exceed the
# tail's, and readers then merge the hour cells (queries.recent_histograms).
day_tails = Table(
    "day_tails",
    metadata,
    Column("monitor_id", Uuid, nullable=False),
    Column("region", String(100), nullable=False),
    Column("bucket_start", UtcDateTime, nullable=False),
    Column("latency_count", Integer, nullable=False),
    Column("histogram", LargeBinary, nullable=False),
    PrimaryKeyConstraint("monitor_id", "bucket_start", "region"),
)

# How far compaction has folded minute cells into hour and day cells (one row, name "rollups"):
# every minute cell before folded_until is in its hour and day cells. Ingest writes a result
# before it into all three resolutions at once, after it into its minute cell only.
watermarks = Table(
    "watermarks",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("folded_until", UtcDateTime, nullable=False),
)

# One row per status interval [start_at, end_at); end_at NULL on the current one. A change that
# arrives late is placed by time: it ends the interval before it and ends where the next starts.
status_intervals = Table(
    "status_intervals",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("monitor_id", Uuid, nullable=False),
    Column("start_at", UtcDateTime, nullable=False),
    Column("end_at", UtcDateTime, nullable=True),
    Column("status", String(20), nullable=False),
    Column("reason", String(500), nullable=False, default=""),
    UniqueConstraint("monitor_id", "start_at", name="uq_status_intervals_monitor_start"),
)

incidents = Table(
    "incidents",
    metadata,
    Column("incident_id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("monitor_id", Uuid, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("cause", String(100), nullable=True),
    Column("first_error", String(2000), nullable=True),
    Column("region", String(100), nullable=True),
    Index("ix_incidents_monitor_start", "monitor_id", "started_at"),
)

# An objective for one monitor or for every monitor carrying a tag. alerting_since is set when a
# burn-rate alert was emitted and cleared when no rule fires, so one episode emits one event.
slos = Table(
    "slos",
    metadata,
    Column("slo_id", Uuid, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("monitor_id", Uuid, nullable=True),
    Column("tag", String(100), nullable=True),
    Column("objective", Float, nullable=False),
    Column("window_days", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("alerting_since", UtcDateTime, nullable=True),
    Index("ix_slos_tenant", "tenant", "created_at", "slo_id"),
)

# A workspace's public status page: the title and logo an admin set (api/status_page.py). The
# logo is kept here, a few KiB at most, so the page needs nothing from any other site.
status_pages = Table(
    "status_pages",
    metadata,
    Column("tenant", String(100), primary_key=True),
    Column("title", String(100), nullable=True),
    Column("logo", LargeBinary, nullable=True),
    Column("logo_type", String(50), nullable=True),
    Column("logo_digest", String(64), nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
