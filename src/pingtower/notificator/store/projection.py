"""The monitor projection as one batch of the consumer sees and changes it.

Applying `monitor.created` / `monitor.updated` / `monitor.status_changed` one event at a time
cost two or three statements each (read the row locked, update it, insert it if missing), built
and compiled per event: a bulk import of thousands of monitors kept the embedded process busy
for minutes (bench/README.md, performance round 8). A batch now reads every row its monitor
events touch in one `SELECT ... FOR UPDATE` (in id order: the same lock order on every
replica), inserts in one statement the rows the per-event path would have inserted for each
missing monitor's first event (its definition, or the placeholder a status change makes before
the monitor's creation), applies the events to those rows in memory, in batch order, and
writes the rows that changed with one executemany UPDATE (`flush`), before anything else reads
the table. Every row is locked from the start of the batch to its commit, as the per-event
path's were from their first event on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.notificator.store.sql import is_postgresql
from pingtower.notificator.store.tables import alerts, monitors


@dataclass(slots=True)
class ProjectedMonitor:
    """A projection row's columns that the monitor events write (not `check_state`, which only
    check results do)."""

    monitor_id: uuid.UUID
    tenant: str
    name: str
    type: str
    target: str
    tags: list[str]
    parent_id: uuid.UUID | None
    status: str
    status_changed_at: datetime | None
    recent_changes: list[str]
    updated_at: datetime

    def columns(self) -> tuple[Any, ...]:
        """Every field, in `_COLUMNS` order (dataclasses' `astuple` copies the lists deeply, at
        several times the cost: they are only ever replaced, never changed in place)."""
        return (
            self.monitor_id, self.tenant, self.name, self.type, self.target, self.tags,
            self.parent_id, self.status, self.status_changed_at, self.recent_changes,
            self.updated_at,
        )  # fmt: skip

    def define(self, definition: Mapping[str, Any]) -> None:
        """What `monitor.created` / `monitor.updated` set (`definition`: `DEFINED` columns)."""
        for column in DEFINED:
            setattr(self, column, definition[column])


# The columns a monitor's definition sets, as `definition_of` gives them.
DEFINED = ("tenant", "name", "type", "target", "tags", "parent_id", "updated_at")
_COLUMNS = tuple(field.name for field in fields(ProjectedMonitor))
_WRITTEN = _COLUMNS[1:]

# Built once: building and compiling a statement per event was a large share of its cost.
_READ = (
    select(*(monitors.c[name] for name in _COLUMNS))
    .where(monitors.c.monitor_id.in_(bindparam("ids", expanding=True)))
    .order_by(monitors.c.monitor_id)
    .with_for_update()
)
_WRITE = (
    update(monitors)
    .where(monitors.c.monitor_id == bindparam("b_monitor_id"))
    .values({name: bindparam(name) for name in _WRITTEN})
)
_INSERT = {
    "postgresql": postgresql.insert(monitors)
    .on_conflict_do_nothing()
    .returning(monitors.c.monitor_id),
    "sqlite": sqlite.insert(monitors).on_conflict_do_nothing().returning(monitors.c.monitor_id),
}


def new_monitor(monitor_id: uuid.UUID, definition: Mapping[str, Any]) -> ProjectedMonitor:
    """The row `monitor.created` makes: its definition, status unknown."""
    return ProjectedMonitor(
        monitor_id=monitor_id,
        tenant=definition["tenant"],
        name=definition["name"],
        type=definition["type"],
        target=definition["target"],
        tags=definition["tags"],
        parent_id=definition["parent_id"],
        status="unknown",
        status_changed_at=None,
        recent_changes=[],
        updated_at=definition["updated_at"],
    )


def placeholder(monitor_id: uuid.UUID, tenant: str, now: datetime) -> ProjectedMonitor:
    """The row a status change makes for a monitor whose creation has not arrived yet (should
    not happen with one ordered producer, but must not lose the alert); `monitor.created`
    fills it."""
    return ProjectedMonitor(
        monitor_id=monitor_id,
        tenant=tenant,
        name=f"monitor {monitor_id}",
        type="",
        target="",
        tags=[],
        parent_id=None,
        status="unknown",
        status_changed_at=None,
        recent_changes=[],
        updated_at=now,
    )


class BatchProjection:
    """The projection rows of one batch's monitors, locked, as the batch's events leave them."""

    def __init__(self) -> None:
        # None: no row (never was, or deleted by this batch)
        self._rows: dict[uuid.UUID, ProjectedMonitor | None] = {}
        # Each row's columns as the database holds them now
        self._stored: dict[uuid.UUID, tuple[Any, ...]] = {}

    def __contains__(self, monitor_id: uuid.UUID) -> bool:
        return monitor_id in self._rows

    def get(self, monitor_id: uuid.UUID) -> ProjectedMonitor | None:
        return self._rows.get(monitor_id)

    async def load(
        self, session: AsyncSession, first: Mapping[uuid.UUID, ProjectedMonitor | None]
    ) -> None:
        """Read and lock the rows of `first`'s monitors; insert, for each monitor without one,
        its row in `first` (None: make none)."""
        if not first:
            return
        await self._read(session, sorted(first))
        missing = [
            row
            for monitor_id, row in first.items()
            if row is not None and self._rows.get(monitor_id) is None
        ]
        if missing:
            await self.insert(session, missing)
        for monitor_id in first:
            self._rows.setdefault(monitor_id, None)

    async def insert(self, session: AsyncSession, rows: Sequence[ProjectedMonitor]) -> None:
        """Insert `rows` (monitors without a row here); a monitor whose row another replica
        inserted meanwhile keeps that one, read and locked instead (the per-event path's
        INSERT ... ON CONFLICT DO NOTHING then locked read)."""
        statement = _INSERT["postgresql" if is_postgresql(session) else "sqlite"]
        result = await session.execute(
            statement,
            [dict(zip(_COLUMNS, row.columns(), strict=True)) for row in rows],
        )
        inserted = set(result.scalars())
        for row in rows:
            if row.monitor_id in inserted:
                self._rows[row.monitor_id] = row
                self._stored[row.monitor_id] = row.columns()
        lost = sorted(row.monitor_id for row in rows if row.monitor_id not in inserted)
        if lost:
            await self._read(session, lost)

    def deleted(self, monitor_id: uuid.UUID) -> None:
        """The row is gone (deleted in the database): what this batch changed in it too."""
        self._rows[monitor_id] = None
        self._stored.pop(monitor_id, None)

    async def flush(self, session: AsyncSession) -> None:
        """Write the rows changed since they were read, inserted or last flushed."""
        changed: list[dict[str, Any]] = []
        for monitor_id, stored in self._stored.items():
            row = self._rows[monitor_id]
            assert row is not None  # a deleted row has no stored columns
            now = row.columns()
            if now != stored:
                values = dict(zip(_WRITTEN, now[1:], strict=True))
                values["b_monitor_id"] = monitor_id
                changed.append(values)
                self._stored[monitor_id] = now
        if changed:
            await session.execute(_WRITE, changed)

    async def _read(self, session: AsyncSession, ids: list[uuid.UUID]) -> None:
        for values in await session.execute(_READ, {"ids": ids}):
            row = ProjectedMonitor(*values)
            self._rows[row.monitor_id] = row
            self._stored[row.monitor_id] = row.columns()


class OpenStatusAlerts:
    """The open alerts that status changes open, worsen and resolve, by monitor: read for a
    whole batch's monitors at once, and again for a monitor whose alerts changed since."""

    def __init__(self, problems: Iterable[str]) -> None:
        self._problems = tuple(problems)
        self._of: dict[uuid.UUID, list[Any]] = {}
        self._read = select(alerts).where(
            alerts.c.monitor_id.in_(bindparam("ids", expanding=True)),
            alerts.c.status == "open",
            alerts.c.problem.in_(self._problems),
        )

    async def load(self, session: AsyncSession, monitor_ids: Iterable[uuid.UUID]) -> None:
        wanted = sorted(set(monitor_ids) - self._of.keys())
        if not wanted:
            return
        for monitor_id in wanted:
            self._of[monitor_id] = []
        for row in await session.execute(self._read, {"ids": wanted}):
            self._of[row.monitor_id].append(row)

    async def of(self, session: AsyncSession, monitor_id: uuid.UUID) -> list[Any]:
        await self.load(session, (monitor_id,))
        return self._of[monitor_id]

    def changed(self, monitor_id: uuid.UUID) -> None:
        """The monitor's alerts were written: read them again when next asked."""
        self._of.pop(monitor_id, None)
