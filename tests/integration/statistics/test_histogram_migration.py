"""Revision 0003 turns the JSON histograms of existing rollup cells into the binary form, and
its downgrade turns them back, on both databases."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from pingtower.common import db
from pingtower.common.db import UtcDateTime
from pingtower.statistics.domain.histogram import Histogram
from pingtower.statistics.service import MIGRATIONS

MONITOR = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
START = datetime(2026, 11, 10, tzinfo=UTC)


# The rollups table as revision 0002 left it (JSON histograms).
OLD_ROLLUPS = sa.table(
    "rollups",
    sa.column("monitor_id", sa.Uuid()),
    sa.column("region", sa.String()),
    sa.column("resolution", sa.String()),
    sa.column("bucket_start", UtcDateTime()),
    sa.column("tenant", sa.String()),
    *(sa.column(name, sa.Integer()) for name in ("up", "degraded", "down", "latency_count")),
    sa.column("latency_sum", sa.Float()),
    *(sa.column(name, sa.JSON()) for name in ("phase_sums", "phase_counts", "histogram")),
)


def downgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.downgrade(config, revision)


def stored_json(histogram: Histogram) -> str:
    data: dict[str, int] = {str(k): n for k, n in histogram.buckets.items()}
    if histogram.zero:
        data["z"] = histogram.zero
    return json.dumps(data)


async def test_existing_json_histograms_are_converted_and_back(database_url: str) -> None:
    histograms = []
    for i in range(7):  # more than one row, each different
        histogram = Histogram()
        histogram.extend([0.0] * i + [10.0 + i, 250.0 * (i + 1), 4000.0])
        histograms.append(histogram)
    await asyncio.to_thread(db.run_migrations, database_url, MIGRATIONS, "0002")
    engine = db.create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                OLD_ROLLUPS.insert(),
                [
                    {
                        "monitor_id": MONITOR,
                        "region": "eu",
                        "resolution": "minute",
                        "bucket_start": START + timedelta(minutes=i),
                        "tenant": "acme",
                        "up": 1,
                        "degraded": 0,
                        "down": 0,
                        "latency_count": 1,
                        "latency_sum": 1.0,
                        "phase_sums": {},
                        "phase_counts": {},
                        "histogram": json.loads(stored_json(histogram)),
                    }
                    for i, histogram in enumerate(histograms)
                ],
            )
        await engine.dispose()
        await asyncio.to_thread(db.run_migrations, database_url, MIGRATIONS, "0003")
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT histogram FROM rollups ORDER BY bucket_start")
            )
            converted = [Histogram.from_bytes(bytes(row.histogram)) for row in rows]
        assert converted == histograms
        await engine.dispose()

        await asyncio.to_thread(downgrade, database_url, "0002")
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT histogram FROM rollups ORDER BY bucket_start")
            )
            # PostgreSQL's driver decodes json itself; SQLite hands back the text
            back = [h if isinstance(h, dict) else json.loads(h) for (h,) in rows]
        assert back == [json.loads(stored_json(h)) for h in histograms]
    finally:
        await engine.dispose()
