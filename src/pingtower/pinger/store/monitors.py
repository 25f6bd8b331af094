"""Queries on monitors, their tags and recent results; every one is scoped by tenant."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, and_, delete, exists, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.db import BigId
from pingtower.common.events import utcnow
from pingtower.common.http.problems import Problem
from pingtower.pinger.store.tables import (
    check_results,
    heartbeats,
    monitor_states,
    monitor_tags,
    monitors,
)


def encode_cursor(*parts: object) -> str:
    raw = json.dumps([str(part) for part in parts]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except ValueError:
        parts = None
    if not isinstance(parts, list) or len(parts) != arity:
        raise Problem(400, "Bad Request", "the cursor is not valid")
    return [str(part) for part in parts]


_WITH_STATE = (
    select(
        monitors,
        monitor_states.c.status,
        monitor_states.c.since.label("status_since"),
        monitor_states.c.incident_id,
        monitor_states.c.last_result_id,
    )
    .select_from(monitors.join(monitor_states, monitor_states.c.monitor_id == monitors.c.id))
    .where(monitors.c.deleted_at.is_(None))
)


async def get_monitor(session: AsyncSession, tenant: str, monitor_id: uuid.UUID) -> Any | None:
    query = _WITH_STATE.where(monitors.c.tenant == tenant, monitors.c.id == monitor_id)
    return (await session.execute(query)).first()


async def list_monitors(
    session: AsyncSession,
    tenant: str,
    *,
    status: str | None,
    tag: str | None,
    type_: str | None,
    text: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[Any], str | None]:
    query = _WITH_STATE.where(monitors.c.tenant == tenant)
    if status is not None:
        query = query.where(monitor_states.c.status == status)
    if type_ is not None:
        query = query.where(monitors.c.type == type_)
    if tag is not None:
        query = query.where(
            exists().where(monitor_tags.c.monitor_id == monitors.c.id, monitor_tags.c.tag == tag)
        )
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                monitors.c.name.ilike(pattern, escape="\\"),
                monitors.c.target.ilike(pattern, escape="\\"),
            )
        )
    if cursor is not None:
        created_text, id_text = decode_cursor(cursor, 2)
        try:
            created, after_id = datetime.fromisoformat(created_text), uuid.UUID(id_text)
        except ValueError:
            raise Problem(400, "Bad Request", "the cursor is not valid") from None
        query = query.where(
            or_(
                monitors.c.created_at > created,
                and_(monitors.c.created_at == created, monitors.c.id > after_id),
            )
        )
    query = query.order_by(monitors.c.created_at, monitors.c.id).limit(limit + 1)
    rows = (await session.execute(query)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at.isoformat(), rows[-1].id)
    return rows, next_cursor


async def insert_monitor(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(monitors).values(**values))
    await replace_tags(session, values["id"], values["tags"])


async def insert_monitors(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Several new monitors and their tags, one statement per table (a batch create)."""
    await session.execute(insert(monitors), list(rows))
    tags = [{"monitor_id": row["id"], "tag": tag} for row in rows for tag in set(row["tags"])]
    if tags:
        await session.execute(insert(monitor_tags), tags)


async def get_monitors(
    session: AsyncSession, tenant: str, monitor_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    """The monitors of `monitor_ids` found in the workspace, with their state, by id."""
    query = _WITH_STATE.where(monitors.c.tenant == tenant, monitors.c.id.in_(monitor_ids))
    return {row.id: row for row in (await session.execute(query)).all()}


# A change of any of these may move a heartbeat's deadline (its grace is in the settings).
_HEARTBEAT_DEADLINE = frozenset(
    {"interval_seconds", "cron", "timezone", "settings", "paused", "deleted_at"}
)


async def update_monitor(
    session: AsyncSession, monitor_id: uuid.UUID, values: dict[str, Any]
) -> None:
    await session.execute(update(monitors).where(monitors.c.id == monitor_id).values(**values))
    if _HEARTBEAT_DEADLINE.intersection(values):
        # The lateness watcher looks at a heartbeat monitor's row again from its next poll (no
        # row: not a heartbeat monitor).
        await session.execute(
            update(heartbeats)
            .where(heartbeats.c.monitor_id == monitor_id)
            .values(check_at=values.get("updated_at") or utcnow())
        )
    if "tags" in values:
        await replace_tags(session, monitor_id, values["tags"])


async def replace_tags(session: AsyncSession, monitor_id: uuid.UUID, tags: list[str]) -> None:
    await session.execute(delete(monitor_tags).where(monitor_tags.c.monitor_id == monitor_id))
    if tags:
        await session.execute(
            insert(monitor_tags), [{"monitor_id": monitor_id, "tag": tag} for tag in set(tags)]
        )


async def monitor_exists(session: AsyncSession, tenant: str, monitor_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(monitors.c.id).where(
            monitors.c.id == monitor_id,
            monitors.c.tenant == tenant,
            monitors.c.deleted_at.is_(None),
        )
    )
    return found is not None


async def get_result(session: AsyncSession, result_id: int) -> Any | None:
    return (
        await session.execute(select(check_results).where(check_results.c.id == result_id))
    ).first()


async def list_results(
    session: AsyncSession, monitor_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[Sequence[Any], str | None]:
    """The monitor's results, newest first, `limit` at a time: its chain of results followed
    from the newest stored (its state row's `last_stored_result_id`), or after a page from
    the predecessor of that page's last result (the cursor). A chain ends at the monitor's
    first result or at one pruned since."""
    if cursor is None:
        start = await session.scalar(
            select(monitor_states.c.last_stored_result_id).where(
                monitor_states.c.monitor_id == monitor_id
            )
        )
    else:
        (after_text,) = decode_cursor(cursor, 1)
        if not after_text.isdigit():
            raise Problem(400, "Bad Request", "the cursor is not valid")
        after = (
            await session.execute(
                select(check_results.c.monitor_id, check_results.c.previous_id).where(
                    check_results.c.id == int(after_text)
                )
            )
        ).first()
        if after is not None and after.monitor_id != monitor_id:
            raise Problem(400, "Bad Request", "the cursor is not one of this monitor's results")
        start = None if after is None else after.previous_id  # pruned since: the end
    if start is None:
        return [], None
    rows = (await session.execute(_chain_query(monitor_id, start, limit + 1))).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].id)
    return rows, next_cursor


def _chain_query(monitor_id: uuid.UUID, start: int, count: int) -> Select[Any]:
    """The first `count` results of the monitor's chain from result `start`, newest first
    (ids grow in the order results were stored, which is the order they were applied)."""
    link = check_results.alias("link")
    chain = select(literal(start, BigId).label("id"), literal(1, Integer).label("depth")).cte(
        "chain", recursive=True
    )
    chain = chain.union_all(
        select(link.c.previous_id, chain.c.depth + 1).where(
            link.c.id == chain.c.id,
            link.c.monitor_id == monitor_id,
            link.c.previous_id.is_not(None),
            chain.c.depth < count,
        )
    )
    return (
        select(check_results)
        .join(chain, check_results.c.id == chain.c.id)
        .where(check_results.c.monitor_id == monitor_id)
        .order_by(check_results.c.id.desc())
    )
