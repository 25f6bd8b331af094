"""The compaction watermark: every minute cell before it is in its hour and day cells."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.statistics.domain.rollups import EPOCH
from pingtower.statistics.store.dialect import is_postgres
from pingtower.statistics.store.tables import watermarks

NAME = "rollups"


async def folded_until(
    session: AsyncSession, *, lock: Literal["share", "update"] | None = None
) -> datetime:
    """The watermark. On PostgreSQL `lock` holds its row until the transaction ends: "share"
    for ingest (many at once), "update" for compaction (alone). SQLite has one writer anyway."""
    query = select(watermarks.c.folded_until).where(watermarks.c.name == NAME)
    if lock is not None and is_postgres(session):
        query = query.with_for_update(read=lock == "share")
    found = await session.scalar(query)
    return EPOCH if found is None else found


async def move(session: AsyncSession, to: datetime) -> None:
    moved = await session.execute(
        update(watermarks).where(watermarks.c.name == NAME).values(folded_until=to)
    )
    if not moved.rowcount:  # type: ignore[attr-defined]
        await session.execute(watermarks.insert().values(name=NAME, folded_until=to))
