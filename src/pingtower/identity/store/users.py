"""User accounts in the identity database. Every function takes the caller's session, so a
handler composes them in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.identity.store.tables import sessions, users


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    tenant: str
    username: str
    password_hash: str
    role: str
    created_at: datetime
    created_by: str
    updated_at: datetime


def _user(row: RowMapping) -> User:
    return User(
        id=row["id"],
        tenant=row["tenant"],
        username=row["username"],
        password_hash=row["password_hash"],
        role=row["role"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        updated_at=row["updated_at"],
    )


async def add(session: AsyncSession, user: User) -> None:
    await session.execute(
        users.insert().values(
            id=user.id,
            tenant=user.tenant,
            username=user.username,
            password_hash=user.password_hash,
            role=user.role,
            created_at=user.created_at,
            created_by=user.created_by,
            updated_at=user.updated_at,
        )
    )


async def by_username(session: AsyncSession, username: str) -> User | None:
    row = (await session.execute(select(users).where(users.c.username == username))).one_or_none()
    return None if row is None else _user(row._mapping)


async def get(session: AsyncSession, tenant: str, user_id: uuid.UUID) -> User | None:
    query = select(users).where(users.c.id == user_id, users.c.tenant == tenant)
    row = (await session.execute(query)).one_or_none()
    return None if row is None else _user(row._mapping)


async def get_for_update(session: AsyncSession, tenant: str, user_id: uuid.UUID) -> User | None:
    """Like `get`, locking the workspace's admins too (PostgreSQL; SQLite's BEGIN IMMEDIATE
    already serialises writers), so two requests cannot each remove "the other" last admin."""
    await session.execute(
        select(users.c.id)
        .where(users.c.tenant == tenant, users.c.role == "admin")
        .with_for_update()
    )
    query = select(users).where(users.c.id == user_id, users.c.tenant == tenant).with_for_update()
    row = (await session.execute(query)).one_or_none()
    return None if row is None else _user(row._mapping)


async def count_all(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(users))).scalar_one())


async def admins_of(session: AsyncSession, tenant: str) -> int:
    query = (
        select(func.count())
        .select_from(users)
        .where(users.c.tenant == tenant, users.c.role == "admin")
    )
    return int((await session.execute(query)).scalar_one())


async def of_tenant(
    session: AsyncSession,
    tenant: str,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int | None = None,
) -> Sequence[User]:
    """The workspace's users, oldest first; `after` (created_at, id) continues a listing."""
    query = select(users).where(users.c.tenant == tenant)
    if after is not None:
        created_at, user_id = after
        query = query.where(
            (users.c.created_at > created_at)
            | ((users.c.created_at == created_at) & (users.c.id > user_id))
        )
    query = query.order_by(users.c.created_at, users.c.id).limit(limit)
    return [_user(row._mapping) for row in await session.execute(query)]


async def change(
    session: AsyncSession,
    user_id: uuid.UUID,
    now: datetime,
    *,
    role: str | None = None,
    password_hash: str | None = None,
) -> None:
    values: dict[str, object] = {"updated_at": now}
    if role is not None:
        values["role"] = role
    if password_hash is not None:
        values["password_hash"] = password_hash
    await session.execute(update(users).where(users.c.id == user_id).values(**values))


async def remove(session: AsyncSession, user_id: uuid.UUID) -> None:
    # Sessions go first: not every SQLite connection enforces the foreign key's cascade.
    await session.execute(delete(sessions).where(sessions.c.user_id == user_id))
    await session.execute(delete(users).where(users.c.id == user_id))
