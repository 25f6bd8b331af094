"""Login sessions: the digest of each token, its user and its expiry."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pingtower.common.security import Principal
from pingtower.identity.store.tables import sessions, users


async def add(
    session: AsyncSession, user_id: uuid.UUID, digest: bytes, now: datetime, expires_at: datetime
) -> None:
    await session.execute(
        sessions.insert().values(
            id=uuid.uuid4(),
            digest=digest,
            user_id=user_id,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
        )
    )


async def principal(session: AsyncSession, digest: bytes, now: datetime) -> Principal | None:
    """Who holds the session with this digest, if it is live. The role is the user's role
    now, so a change of role applies to sessions already open."""
    query = (
        select(users.c.username, users.c.tenant, users.c.role)
        .select_from(sessions.join(users, sessions.c.user_id == users.c.id))
        .where(
            sessions.c.digest == digest,
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > now,
        )
    )
    row = (await session.execute(query)).one_or_none()
    if row is None:
        return None
    return Principal(row.username, row.tenant, frozenset({row.role}))


async def revoke(session: AsyncSession, digest: bytes, now: datetime) -> None:
    await session.execute(
        update(sessions)
        .where(sessions.c.digest == digest, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_all_of(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(sessions)
        .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def purge_expired(session: AsyncSession, now: datetime) -> None:
    """Forget sessions past their expiry; a revoked one is kept until then, harmlessly."""
    await session.execute(delete(sessions).where(sessions.c.expires_at <= now))
