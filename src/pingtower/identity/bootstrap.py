"""The first start: an `admin` user in workspace `default`, so the embedded mode can be logged
into at all. Its password comes from PINGTOWER_ADMIN_PASSWORD, or is generated and shown once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.identity.passwords import Passwords, generate_password
from pingtower.identity.store import users
from pingtower.identity.store.users import User

ADMIN_USERNAME = "admin"
DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class NewAdmin:
    username: str
    # The generated password, to show once; None when it came from the settings.
    generated_password: str | None


async def ensure_admin(
    sessions: async_sessionmaker[AsyncSession],
    passwords: Passwords,
    configured_password: str | None,
    now: datetime,
) -> NewAdmin | None:
    """Create the admin when the database has no user at all; None when there was one already
    (a later start, or another replica that won the race)."""
    async with sessions() as session:
        if await users.count_all(session) > 0:
            return None
    password = configured_password or generate_password()
    admin = User(
        id=uuid.uuid4(),
        tenant=DEFAULT_WORKSPACE,
        username=ADMIN_USERNAME,
        password_hash=await passwords.hash_async(password),
        role="admin",
        created_at=now,
        created_by="first-start",
        updated_at=now,
    )
    try:
        async with sessions() as session, session.begin():
            if await users.count_all(session) > 0:
                return None
            await users.add(session, admin)
    except IntegrityError:  # another replica created it between our check and our insert
        return None
    return NewAdmin(ADMIN_USERNAME, None if configured_password else password)


def banner_lines(new_admin: NewAdmin | None) -> list[str]:
    """What `pingtower up` prints about the admin account: something only on the first start."""
    if new_admin is None:
        return []
    if new_admin.generated_password is None:
        return [
            f"  admin:  user '{new_admin.username}' created, password from PINGTOWER_ADMIN_PASSWORD"
        ]
    return [
        f"  admin:  user '{new_admin.username}', password '{new_admin.generated_password}'",
        "          (shown this once: note it now; change it with PATCH /api/v1/users/{id})",
    ]
