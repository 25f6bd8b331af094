"""Statistics: rollup histograms stored as bytes (dense counts) instead of JSON objects.

Reading a year of cells decoded one JSON object per row, which cost more than the query; the
binary form (domain/histogram.py, `Histogram.to_bytes`) decodes with one struct call. Existing
cells are converted here, in pages, in the migration's transaction.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from pingtower.common.db import UtcDateTime
from pingtower.statistics.domain.histogram import Histogram

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("monitor_id", "resolution", "bucket_start", "region")
PAGE = 5000


def _from_json(data: Any) -> Histogram:
    if isinstance(data, str):
        data = json.loads(data)
    buckets = {int(k): int(n) for k, n in (data or {}).items() if k != "z"}
    return Histogram(buckets, zero=int((data or {}).get("z", 0)))


def _to_json(histogram: Histogram) -> str:
    data: dict[str, int] = {str(k): n for k, n in histogram.buckets.items()}
    if histogram.zero:
        data["z"] = histogram.zero
    return json.dumps(data)


def _convert(source: str, target: str, encode: Any) -> None:
    """Copy column `source` into `target` through `encode`, page by page in key order."""
    bind = op.get_bind()
    table = sa.table(
        "rollups",
        sa.column("monitor_id", sa.Uuid()),
        sa.column("resolution", sa.String()),
        sa.column("bucket_start", UtcDateTime()),
        sa.column("region", sa.String()),
        sa.column(source),
        sa.column(target),
    )
    key = [table.c[name] for name in KEY]
    after: tuple[Any, ...] | None = None
    while True:
        query = sa.select(*key, table.c[source]).order_by(*key).limit(PAGE)
        if after is not None:
            query = query.where(sa.tuple_(*key) > sa.tuple_(*after))
        rows = bind.execute(query).all()
        if not rows:
            return
        bind.execute(
            table.update()
            .where(*(table.c[name] == sa.bindparam(f"k_{name}") for name in KEY))
            .values({target: sa.bindparam("k_value")}),
            [
                {**{f"k_{name}": getattr(row, name) for name in KEY}, "k_value": encode(row[4])}
                for row in rows
            ],
        )
        after = tuple(rows[-1][:4])


def upgrade() -> None:
    with op.batch_alter_table("rollups") as batch:
        batch.add_column(sa.Column("histogram_bytes", sa.LargeBinary(), nullable=True))
    _convert("histogram", "histogram_bytes", lambda data: _from_json(data).to_bytes())
    with op.batch_alter_table("rollups") as batch:
        batch.drop_column("histogram")
        batch.alter_column(
            "histogram_bytes",
            new_column_name="histogram",
            existing_type=sa.LargeBinary(),
            nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("rollups") as batch:
        batch.add_column(sa.Column("histogram_json", sa.JSON(), nullable=True))
    _convert("histogram", "histogram_json", lambda data: _to_json(Histogram.from_bytes(data)))
    with op.batch_alter_table("rollups") as batch:
        batch.drop_column("histogram")
        batch.alter_column(
            "histogram_json", new_column_name="histogram", existing_type=sa.JSON(), nullable=False
        )
