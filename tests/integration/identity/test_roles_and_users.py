"""Roles through a protected route, and /users managed by admins only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pingtower.identity.store import users
from pingtower.identity.store.users import User
from tests.integration.identity.conftest import ADMIN_PASSWORD, RunIdentity, bearer, sqlite_only


async def test_a_viewer_can_read_but_not_create_and_an_editor_can_create(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        await running.create_user(admin, "vera", "viewer")
        await running.create_user(admin, "eddie", "editor")
        viewer = await running.token("vera", "vera-password-1")
        editor = await running.token("eddie", "eddie-password-1")

        assert (await running.client.get("/api/v1/things", headers=bearer(viewer))).is_success
        refused = await running.client.post("/api/v1/things", headers=bearer(viewer))
        assert refused.status_code == 403
        created = await running.client.post("/api/v1/things", headers=bearer(editor))
        assert created.status_code == 201
        assert created.json() == {"workspace": "default", "by": "eddie"}


@sqlite_only
async def test_only_an_admin_manages_users(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        await running.create_user(admin, "eddie", "editor")
        editor = await running.token("eddie", "eddie-password-1")
        for method, path in [("GET", "/api/v1/users"), ("POST", "/api/v1/users")]:
            body = {"username": "x", "password": "x-password-123", "role": "admin"}
            response = await running.client.request(
                method, path, headers=bearer(editor), json=body if method == "POST" else None
            )
            assert response.status_code == 403
        assert (await running.client.get("/api/v1/users")).status_code == 401


async def test_admin_creates_lists_and_reads_users_without_their_password_hash(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        running.clocks.advance(1)  # created after the admin
        created = await running.create_user(admin, "Vera", "viewer")
        assert created["username"] == "vera"
        assert created["created_by"] == "admin"
        assert "password" not in str(created)
        assert "hash" not in str(created)
        listed = await running.client.get("/api/v1/users", headers=bearer(admin))
        assert [u["username"] for u in listed.json()["items"]] == ["admin", "vera"]
        one = await running.client.get(f"/api/v1/users/{created['id']}", headers=bearer(admin))
        assert one.json() == created


async def test_users_are_listed_page_by_page(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        running.clocks.advance(1)  # created after the admin
        for n in range(3):
            await running.create_user(admin, f"user{n}", "viewer")
            running.clocks.advance(1)
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(5):
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (
                await running.client.get("/api/v1/users", headers=bearer(admin), params=params)
            ).json()
            seen += [u["username"] for u in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["admin", "user0", "user1", "user2"]


async def test_creating_rejects_a_taken_username_a_short_password_and_server_fields(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        taken = await running.client.post(
            "/api/v1/users",
            json={"username": "ADMIN", "password": "long-enough-pw", "role": "viewer"},
            headers=bearer(admin),
        )
        assert taken.status_code == 409
        short = await running.client.post(
            "/api/v1/users",
            json={"username": "shorty", "password": "short", "role": "viewer"},
            headers=bearer(admin),
        )
        assert short.status_code == 422
        mass = await running.client.post(
            "/api/v1/users",
            json={
                "username": "sneaky",
                "password": "long-enough-pw",
                "role": "viewer",
                "tenant": "other",
            },
            headers=bearer(admin),
        )
        assert mass.status_code == 422


async def test_a_role_change_applies_to_sessions_already_open(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        vera = await running.create_user(admin, "vera", "viewer")
        session = await running.token("vera", "vera-password-1")
        assert (
            await running.client.post("/api/v1/things", headers=bearer(session))
        ).status_code == 403
        changed = await running.client.patch(
            f"/api/v1/users/{vera['id']}", json={"role": "editor"}, headers=bearer(admin)
        )
        assert changed.json()["role"] == "editor"
        assert (
            await running.client.post("/api/v1/things", headers=bearer(session))
        ).status_code == 201


async def test_a_new_password_ends_the_users_sessions(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        vera = await running.create_user(admin, "vera", "viewer")
        session = await running.token("vera", "vera-password-1")
        await running.client.patch(
            f"/api/v1/users/{vera['id']}",
            json={"password": "a-brand-new-password"},
            headers=bearer(admin),
        )
        assert (
            await running.client.get("/api/v1/auth/me", headers=bearer(session))
        ).status_code == 401
        assert (await running.login("vera", "vera-password-1")).status_code == 401
        assert (await running.login("vera", "a-brand-new-password")).status_code == 200


async def test_a_deleted_user_can_neither_use_a_session_nor_log_in(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        vera = await running.create_user(admin, "vera", "viewer")
        session = await running.token("vera", "vera-password-1")
        deleted = await running.client.delete(f"/api/v1/users/{vera['id']}", headers=bearer(admin))
        assert deleted.status_code == 204
        assert (
            await running.client.get("/api/v1/auth/me", headers=bearer(session))
        ).status_code == 401
        assert (await running.login("vera", "vera-password-1")).status_code == 401
        again = await running.client.delete(f"/api/v1/users/{vera['id']}", headers=bearer(admin))
        assert again.status_code == 404


async def test_the_last_admin_can_be_neither_demoted_nor_deleted(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        me = (await running.client.get("/api/v1/users", headers=bearer(admin))).json()["items"][0]
        path = f"/api/v1/users/{me['id']}"
        demote = await running.client.patch(path, json={"role": "viewer"}, headers=bearer(admin))
        assert demote.status_code == 409
        assert (await running.client.delete(path, headers=bearer(admin))).status_code == 409
        # With a second admin, the first may go.
        await running.create_user(admin, "second", "admin")
        assert (await running.client.delete(path, headers=bearer(admin))).status_code == 204


async def test_another_workspaces_user_answers_404(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        now = datetime.now(UTC)
        stranger = User(uuid.uuid4(), "other", "stranger", "x", "admin", now, "test", now)
        async with running.identity.sessions() as session, session.begin():
            await users.add(session, stranger)
        path = f"/api/v1/users/{stranger.id}"
        assert (await running.client.get(path, headers=bearer(admin))).status_code == 404
        patch = await running.client.patch(path, json={"role": "viewer"}, headers=bearer(admin))
        assert patch.status_code == 404
        assert (await running.client.delete(path, headers=bearer(admin))).status_code == 404
        listed = (await running.client.get("/api/v1/users", headers=bearer(admin))).json()
        assert "stranger" not in [u["username"] for u in listed["items"]]
