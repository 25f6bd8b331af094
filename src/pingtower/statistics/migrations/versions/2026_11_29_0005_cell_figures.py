"""Statistics: finished hour and day cells keep their percentiles and timeseries point; the last
finished day keeps a histogram per hour to its end (day_tails).

The figures of the cells already finished (their hour or day ended at or before the
compaction watermark) are computed here, in pages, in the migration's transaction, so a long
series reads them from the first request on. The day tails are not backfilled: readers check
them against the hour cells and merge those when a tail is missing, and compaction writes
the tails of each day when it finishes it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

from pingtower.common.db import UtcDateTime
from pingtower.statistics.domain.cell_figures import figures
from pingtower.statistics.domain.series import StoredCell

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("monitor_id", "resolution", "bucket_start", "region")
FIGURES = ("figures_checks", "p50", "p90", "p95", "p99", "point_json")
PAGE = 5000
LENGTHS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def _map(data: Any) -> dict[str, Any]:
    return dict(json.loads(data) if isinstance(data, str) else (data or {}))


def _backfill() -> None:
    bind = op.get_bind()
    marks = sa.table("watermarks", sa.column("name"), sa.column("folded_until", UtcDateTime()))
    watermark = bind.execute(
        sa.select(marks.c.folded_until).where(marks.c.name == "rollups")
    ).scalar()
    if watermark is None:
        return
    table = sa.table(
        "rollups",
        sa.column("monitor_id", sa.Uuid()),
        sa.column("resolution", sa.String()),
        sa.column("bucket_start", UtcDateTime()),
        sa.column("region", sa.String()),
        *(sa.column(name, sa.Integer()) for name in ("up", "degraded", "down", "latency_count")),
        *(sa.column(name, sa.Float()) for name in ("latency_min", "latency_max", "latency_sum")),
        sa.column("phase_sums", sa.JSON()),
        sa.column("phase_counts", sa.JSON()),
        sa.column("histogram", sa.LargeBinary()),
        sa.column("figures_checks", sa.Integer()),
        *(sa.column(name, sa.Float()) for name in ("p50", "p90", "p95", "p99")),
        sa.column("point_json", sa.Text()),
    )
    key = [table.c[name] for name in KEY]
    for resolution, length in LENGTHS.items():
        last: datetime = watermark - length
        after: tuple[Any, ...] | None = None
        while True:
            query = (
                sa.select(*key, *(table.c[name] for name in StoredCell._fields))
                .where(table.c.resolution == resolution, table.c.bucket_start <= last)
                .order_by(*key)
                .limit(PAGE)
            )
            if after is not None:
                query = query.where(sa.tuple_(*key) > sa.tuple_(*after))
            rows = bind.execute(query).all()
            if not rows:
                break
            found = figures(
                [
                    StoredCell._make((*row[4:11], _map(row[11]), _map(row[12]), row[13]))
                    for row in rows
                ]
            )
            bind.execute(
                table.update()
                .where(*(table.c[name] == sa.bindparam(f"k_{name}") for name in KEY))
                .values({name: sa.bindparam(f"v_{name}") for name in FIGURES}),
                [
                    {f"k_{name}": row[i] for i, name in enumerate(KEY)}
                    | {f"v_{name}": value for name, value in zip(FIGURES, cell, strict=True)}
                    for row, cell in zip(rows, found, strict=True)
                ],
            )
            after = tuple(rows[-1][:4])


def upgrade() -> None:
    with op.batch_alter_table("rollups") as batch:
        batch.add_column(sa.Column("figures_checks", sa.Integer(), nullable=True))
        for name in ("p50", "p90", "p95", "p99"):
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch.add_column(sa.Column("point_json", sa.Text(), nullable=True))
    op.create_table(
        "day_tails",
        sa.Column("monitor_id", sa.Uuid(), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("bucket_start", UtcDateTime(), nullable=False),
        sa.Column("latency_count", sa.Integer(), nullable=False),
        sa.Column("histogram", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("monitor_id", "bucket_start", "region"),
    )
    _backfill()


def downgrade() -> None:
    op.drop_table("day_tails")
    with op.batch_alter_table("rollups") as batch:
        for name in FIGURES:
            batch.drop_column(name)
