"""The one place that picks PostgreSQL's or SQLite's INSERT (both have ON CONFLICT)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def upsert(session: AsyncSession, table: Table) -> Any:
    """An INSERT with `on_conflict_do_nothing` / `on_conflict_do_update` for this dialect."""
    return postgresql.insert(table) if is_postgres(session) else sqlite.insert(table)
