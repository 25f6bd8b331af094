"""POST /auth/login, /auth/logout, GET /auth/me: sessions as a bearer token and as a cookie."""

from __future__ import annotations

import uuid

from argon2 import PasswordHasher

from pingtower.identity.passwords import Passwords
from pingtower.identity.store import users
from pingtower.identity.store.users import User
from tests.integration.identity.conftest import ADMIN_PASSWORD, RunIdentity, bearer, sqlite_only


async def test_login_answers_a_bearer_token_that_names_the_admin(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        response = await running.login("admin", ADMIN_PASSWORD)
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 12 * 3600
        running.client.cookies.clear()
        me = await running.client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
        assert me.status_code == 200
        assert me.json() == {"subject": "admin", "workspace": "default", "roles": ["admin"]}


async def test_login_sets_an_httponly_samesite_strict_cookie_that_logs_the_browser_in(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        response = await running.login("admin", ADMIN_PASSWORD)
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("pingtower_session=")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
        assert "Max-Age=43200" in cookie
        me = await running.client.get("/api/v1/auth/me")  # the cookie only
        assert me.status_code == 200
        assert me.json()["subject"] == "admin"


@sqlite_only
async def test_the_cookie_is_secure_when_the_request_is_https(run_identity: RunIdentity) -> None:
    async with run_identity(base_url="https://testserver") as running:
        response = await running.login("admin", ADMIN_PASSWORD)
        assert "Secure" in response.headers["set-cookie"]


@sqlite_only
async def test_usernames_are_case_insensitive_at_login(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        assert (await running.login("  ADMIN ", ADMIN_PASSWORD)).status_code == 200


async def test_logout_ends_the_session_for_the_bearer_token(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        token = await running.token("admin", ADMIN_PASSWORD)
        out = await running.client.post("/api/v1/auth/logout", headers=bearer(token))
        assert out.status_code == 204
        me = await running.client.get("/api/v1/auth/me", headers=bearer(token))
        assert me.status_code == 401
        assert me.headers["content-type"] == "application/problem+json"


async def test_logout_ends_the_cookie_session_and_clears_the_cookie(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        await running.login("admin", ADMIN_PASSWORD)
        cookie = running.client.cookies["pingtower_session"]
        out = await running.client.post("/api/v1/auth/logout")
        assert out.status_code == 204
        assert 'pingtower_session=""' in out.headers["set-cookie"]
        assert "pingtower_session" not in running.client.cookies
        # The old cookie value is dead on the server too, not only forgotten by the browser.
        running.client.cookies.set("pingtower_session", cookie)
        me = await running.client.get("/api/v1/auth/me")
        assert me.status_code == 401


@sqlite_only
async def test_without_credentials_me_is_401(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        assert (await running.client.get("/api/v1/auth/me")).status_code == 401
        forged = bearer("pts_" + "A" * 43)
        assert (await running.client.get("/api/v1/auth/me", headers=forged)).status_code == 401


async def test_a_wrong_password_and_an_unknown_user_get_the_same_401(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        wrong = await running.login("admin", "not the password")
        unknown = await running.login("nobody", "not the password")
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json()["detail"] == unknown.json()["detail"]
        assert "set-cookie" not in wrong.headers


@sqlite_only
async def test_login_rejects_unknown_fields(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        response = await running.client.post(
            "/api/v1/auth/login",
            json={"username": "admin", "password": ADMIN_PASSWORD, "role": "admin"},
        )
        assert response.status_code == 422


async def test_a_session_ends_after_session_hours(run_identity: RunIdentity) -> None:
    async with run_identity(session_hours=2) as running:
        token = await running.token("admin", ADMIN_PASSWORD)
        running.clocks.advance(2 * 3600 - 1)
        assert (await running.client.get("/api/v1/auth/me", headers=bearer(token))).is_success
        running.clocks.advance(1)
        assert (
            await running.client.get("/api/v1/auth/me", headers=bearer(token))
        ).status_code == 401


@sqlite_only
async def test_the_sixth_attempt_after_five_failures_is_429_with_retry_after(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        for _ in range(5):
            assert (await running.login("admin", "guess")).status_code == 401
        # Locked: even the right password is not looked at.
        throttled = await running.login("admin", ADMIN_PASSWORD)
        assert throttled.status_code == 429
        assert throttled.headers["content-type"] == "application/problem+json"
        assert throttled.headers["retry-after"] == "30"
        running.clocks.advance(30)
        assert (await running.login("admin", ADMIN_PASSWORD)).status_code == 200


@sqlite_only
async def test_the_lockout_doubles_with_each_further_failure(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        for _ in range(5):
            await running.login("admin", "guess")
        running.clocks.advance(30)
        assert (await running.login("admin", "guess again")).status_code == 401
        assert (await running.login("admin", ADMIN_PASSWORD)).headers["retry-after"] == "60"


@sqlite_only
async def test_one_address_guessing_over_many_usernames_is_throttled(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        for n in range(5):
            assert (await running.login(f"user{n}", "guess")).status_code == 401
        assert (await running.login("someone-else", "guess")).status_code == 429


@sqlite_only
async def test_throttled_attempts_are_answered_without_checking_the_password(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        for _ in range(5):
            await running.login("admin", "guess")
        checked: list[str | None] = []
        original = running.identity.passwords.verify

        def spy(stored: str | None, password: str) -> bool:
            checked.append(stored)
            return original(stored, password)

        running.identity.passwords.verify = spy  # type: ignore[method-assign]
        assert (await running.login("admin", ADMIN_PASSWORD)).status_code == 429
        assert checked == []


async def test_a_password_hashed_with_weaker_parameters_is_rehashed_at_login(
    run_identity: RunIdentity,
) -> None:
    weak = Passwords(PasswordHasher(time_cost=1, memory_cost=512, parallelism=1))
    async with run_identity() as running:
        now = running.clocks.wall
        old = User(
            uuid.uuid4(),
            "default",
            "oldtimer",
            weak.hash("an-old-password"),
            "viewer",
            now,
            "test",
            now,
        )
        async with running.identity.sessions() as session, session.begin():
            await users.add(session, old)
        assert (await running.login("oldtimer", "an-old-password")).status_code == 200
        async with running.identity.sessions() as session:
            stored = await users.by_username(session, "oldtimer")
        assert stored is not None
        assert stored.password_hash != old.password_hash
        assert not running.identity.passwords.needs_rehash(stored.password_hash)
        assert running.identity.passwords.verify(stored.password_hash, "an-old-password")
