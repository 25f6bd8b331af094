"""/users: the workspace's accounts, managed by its admins."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.http.problems import Problem, not_found
from pingtower.common.security import Principal, require
from pingtower.identity.api.schemas import UserCreate, UserPage, UserPublic, UserUpdate
from pingtower.identity.passwords import Passwords
from pingtower.identity.store import sessions as session_store
from pingtower.identity.store import users
from pingtower.identity.store.users import User


def _encode_cursor(user: User) -> str:
    raw = json.dumps([user.created_at.isoformat(), str(user.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, user_id = json.loads(raw)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, uuid.UUID(user_id)
    except (ValueError, TypeError) as exc:
        raise Problem(422, "Validation failed", "cursor: not a cursor of this listing") from exc


def _last_admin() -> Problem:
    return Problem(409, "Conflict", "the workspace must keep at least one admin")


def build_users_router(
    sessions: async_sessionmaker[AsyncSession],
    passwords: Passwords,
    *,
    clock: Callable[[], datetime],
) -> APIRouter:
    router = APIRouter(prefix="/users", tags=["users"])
    admin = Depends(require("admin"))

    @router.post("", status_code=201, response_model=UserPublic)
    async def create_user(body: UserCreate, principal: Principal = admin) -> UserPublic:
        now = clock()
        user = User(
            id=uuid.uuid4(),
            tenant=principal.tenant,
            username=body.username,
            password_hash=await passwords.hash_async(body.password),
            role=body.role,
            created_at=now,
            created_by=principal.subject,
            updated_at=now,
        )
        try:
            async with sessions() as session, session.begin():
                await users.add(session, user)
        except IntegrityError as exc:
            raise Problem(409, "Conflict", "that username is taken") from exc
        return UserPublic.of(user)

    @router.get("", response_model=UserPage)
    async def list_users(
        principal: Principal = admin,
        limit: int = Query(50, ge=1, le=200),
        cursor: str | None = Query(None, max_length=200, description="next_cursor of a page"),
    ) -> UserPage:
        after = _decode_cursor(cursor) if cursor else None
        async with sessions() as session:
            found = await users.of_tenant(session, principal.tenant, after=after, limit=limit + 1)
        page = list(found[:limit])
        next_cursor = _encode_cursor(page[-1]) if len(found) > limit else None
        return UserPage(items=[UserPublic.of(user) for user in page], next_cursor=next_cursor)

    @router.get("/{user_id}", response_model=UserPublic)
    async def get_user(user_id: uuid.UUID, principal: Principal = admin) -> UserPublic:
        async with sessions() as session:
            user = await users.get(session, principal.tenant, user_id)
        if user is None:
            raise not_found("user")
        return UserPublic.of(user)

    @router.patch("/{user_id}", response_model=UserPublic)
    async def update_user(
        user_id: uuid.UUID, body: UserUpdate, principal: Principal = admin
    ) -> UserPublic:
        now = clock()
        new_hash = await passwords.hash_async(body.password) if body.password else None
        async with sessions() as session, session.begin():
            user = await users.get_for_update(session, principal.tenant, user_id)
            if user is None:
                raise not_found("user")
            demoted = user.role == "admin" and body.role not in (None, "admin")
            if demoted and await users.admins_of(session, principal.tenant) <= 1:
                raise _last_admin()
            await users.change(session, user.id, now, role=body.role, password_hash=new_hash)
            if new_hash is not None:
                await session_store.revoke_all_of(session, user.id, now)
            changed = await users.get(session, principal.tenant, user_id)
        assert changed is not None
        return UserPublic.of(changed)

    @router.delete("/{user_id}", status_code=204)
    async def delete_user(user_id: uuid.UUID, principal: Principal = admin) -> Response:
        async with sessions() as session, session.begin():
            user = await users.get_for_update(session, principal.tenant, user_id)
            if user is None:
                raise not_found("user")
            if user.role == "admin" and await users.admins_of(session, principal.tenant) <= 1:
                raise _last_admin()
            await users.remove(session, user.id)
        return Response(status_code=204)

    return router
