"""Statistics: monitors projection, raw results, rollups, status timeline, incidents, SLOs,
outbox, inbox.

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
        "monitors",
        sa.Column("monitor_id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("target", sa.String(2000), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("definition_at", UtcDateTime(), nullable=True),
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
        sa.Column("last_check_at", UtcDateTime(), nullable=True),
        sa.Column("last_outcome", sa.String(20), nullable=True),
        sa.Column("last_latency_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("monitor_id"),
    )
    op.create_index("ix_monitors_tenant", "monitors", ["tenant", "monitor_id"])

    if op.get_bind().dialect.name == "postgresql":
        # partitioned by day: retention drops whole partitions (store/partitions.py makes them)
        op.execute(
            """
            CREATE TABLE results (
                id BIGSERIAL NOT NULL,
                tenant VARCHAR(100) NOT NULL,
                check_id UUID NOT NULL,
                monitor_id UUID NOT NULL,
                region VARCHAR(100) NOT NULL,
                scheduled_at TIMESTAMP WITH TIME ZONE NOT NULL,
                started_at TIMESTAMP WITH TIME ZONE NOT NULL,
                finished_at TIMESTAMP WITH TIME ZONE NOT NULL,
                outcome VARCHAR(20) NOT NULL,
                latency_ms FLOAT,
                error_kind VARCHAR(100),
                status_code INTEGER,
                phases JSON NOT NULL,
                PRIMARY KEY (id, finished_at),
                CONSTRAINT uq_results_check UNIQUE (check_id, finished_at)
            ) PARTITION BY RANGE (finished_at)
            """
        )
        op.execute("CREATE TABLE results_default PARTITION OF results DEFAULT")
    else:
        op.create_table(
            "results",
            sa.Column("id", BigId, autoincrement=True, nullable=False),
            sa.Column("tenant", sa.String(100), nullable=False),
            sa.Column("check_id", sa.Uuid(), nullable=False),
            sa.Column("monitor_id", sa.Uuid(), nullable=False),
            sa.Column("region", sa.String(100), nullable=False),
            sa.Column("scheduled_at", UtcDateTime(), nullable=False),
            sa.Column("started_at", UtcDateTime(), nullable=False),
            sa.Column("finished_at", UtcDateTime(), nullable=False),
            sa.Column("outcome", sa.String(20), nullable=False),
            sa.Column("latency_ms", sa.Float(), nullable=True),
            sa.Column("error_kind", sa.String(100), nullable=True),
            sa.Column("status_code", sa.Integer(), nullable=True),
            sa.Column("phases", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("check_id", "finished_at", name="uq_results_check"),
        )
    op.create_index("ix_results_monitor_time", "results", ["monitor_id", "finished_at"])
    op.create_index("ix_results_time", "results", ["finished_at"])

    op.create_table(
        "rollups",
        sa.Column("monitor_id", sa.Uuid(), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("resolution", sa.String(10), nullable=False),
        sa.Column("bucket_start", UtcDateTime(), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("up", sa.Integer(), nullable=False),
        sa.Column("degraded", sa.Integer(), nullable=False),
        sa.Column("down", sa.Integer(), nullable=False),
        sa.Column("latency_count", sa.Integer(), nullable=False),
        sa.Column("latency_min", sa.Float(), nullable=True),
        sa.Column("latency_max", sa.Float(), nullable=True),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("phase_sums", sa.JSON(), nullable=False),
        sa.Column("phase_counts", sa.JSON(), nullable=False),
        sa.Column("histogram", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("monitor_id", "resolution", "bucket_start", "region"),
    )
    op.create_index("ix_rollups_time", "rollups", ["resolution", "bucket_start"])

    op.create_table(
        "status_intervals",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("monitor_id", sa.Uuid(), nullable=False),
        sa.Column("start_at", UtcDateTime(), nullable=False),
        sa.Column("end_at", UtcDateTime(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("monitor_id", "start_at", name="uq_status_intervals_monitor_start"),
    )

    op.create_table(
        "incidents",
        sa.Column("incident_id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("monitor_id", sa.Uuid(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.Column("cause", sa.String(100), nullable=True),
        sa.Column("first_error", sa.String(2000), nullable=True),
        sa.Column("region", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    op.create_index("ix_incidents_monitor_start", "incidents", ["monitor_id", "started_at"])

    op.create_table(
        "slos",
        sa.Column("slo_id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("monitor_id", sa.Uuid(), nullable=True),
        sa.Column("tag", sa.String(100), nullable=True),
        sa.Column("objective", sa.Float(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("alerting_since", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("slo_id"),
    )
    op.create_index("ix_slos_tenant", "slos", ["tenant", "created_at", "slo_id"])

    op.create_table(
        "outbox",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
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
        "slos",
        "incidents",
        "status_intervals",
        "rollups",
        "results",
        "monitors",
    ):
        op.drop_table(table)
