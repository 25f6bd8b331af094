"""Daily partitions of the raw results table on PostgreSQL.

Partitions are made a few days ahead, so a result always finds its day's partition (results
for days without one, say far in the past, land in the default partition and are pruned row by
row). Retention drops whole partitions: no row-by-row delete, no table bloat. SQLite has no
partitions; there the service prunes rows in batches.
"""

from __future__ import annotations

import re
import zlib
from datetime import UTC, date, datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^results_p(\d{8})$")
_LOCK = zlib.crc32(b"statistics:results-partitions")


def partition_name(day: date) -> str:
    return f"results_p{day:%Y%m%d}"


def day_of(name: str) -> date | None:
    match = _NAME.match(name)
    return (
        None if match is None else datetime.strptime(match[1], "%Y%m%d").replace(tzinfo=UTC).date()
    )


async def partitions(session: AsyncSession) -> list[date]:
    """The days that have a partition, oldest first."""
    rows = await session.execute(
        text(
            "SELECT child.relname FROM pg_inherits "
            "JOIN pg_class parent ON parent.oid = pg_inherits.inhparent "
            "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
            "WHERE parent.relname = 'results'"
        )
    )
    days = [day_of(name) for (name,) in rows]
    return sorted(day for day in days if day is not None)


async def ensure(session: AsyncSession, today: date, days_ahead: int = 3) -> list[date]:
    """Create the partitions of today and the next `days_ahead` days; returns the new ones.
    An advisory lock keeps two replicas from creating the same one at once."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    existing = set(await partitions(session))
    created = []
    for offset in range(days_ahead + 1):
        day = today + timedelta(days=offset)
        if day in existing:
            continue
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        # names and bounds come from dates, never from input
        await session.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF results "
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
        )
        created.append(day)
    return created


async def drop_before(session: AsyncSession, cutoff: datetime) -> list[date]:
    """Drop every partition whose whole day ends at or before `cutoff`; returns their days."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    dropped = []
    for day in await partitions(session):
        end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        if end <= cutoff:
            await session.execute(text(f"DROP TABLE IF EXISTS {partition_name(day)}"))
            dropped.append(day)
    if dropped:
        log.info("results partitions dropped", days=[str(day) for day in dropped])
    return dropped
