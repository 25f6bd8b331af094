"""API keys live in the identity database and authenticate through the identity component."""

from __future__ import annotations

from tests.integration.identity.conftest import ADMIN_PASSWORD, RunIdentity, bearer, sqlite_only


async def test_an_api_key_created_by_an_admin_works_until_revoked(
    run_identity: RunIdentity,
) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        created = await running.client.post(
            "/api/v1/api-keys", json={"name": "ci", "role": "editor"}, headers=bearer(admin)
        )
        assert created.status_code == 201
        key = created.json()["key"]

        thing = await running.client.post("/api/v1/things", headers=bearer(key))
        assert thing.status_code == 201
        assert thing.json()["by"] == f"api-key:{created.json()['id']}"
        # Shown once: the listing has no key.
        listed = await running.client.get("/api/v1/api-keys", headers=bearer(admin))
        assert "key" not in listed.json()["items"][0]

        revoked = await running.client.delete(
            f"/api/v1/api-keys/{created.json()['id']}", headers=bearer(admin)
        )
        assert revoked.status_code == 204
        assert (await running.client.post("/api/v1/things", headers=bearer(key))).status_code == 401


@sqlite_only
async def test_an_api_key_is_limited_to_its_role(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        created = await running.client.post(
            "/api/v1/api-keys", json={"name": "dashboards", "role": "viewer"}, headers=bearer(admin)
        )
        key = created.json()["key"]
        assert (await running.client.get("/api/v1/things", headers=bearer(key))).is_success
        assert (await running.client.post("/api/v1/things", headers=bearer(key))).status_code == 403
        assert (
            await running.client.get("/api/v1/api-keys", headers=bearer(key))
        ).status_code == 403


@sqlite_only
async def test_a_non_admin_cannot_create_api_keys(run_identity: RunIdentity) -> None:
    async with run_identity() as running:
        admin = await running.token("admin", ADMIN_PASSWORD)
        await running.create_user(admin, "eddie", "editor")
        editor = await running.token("eddie", "eddie-password-1")
        response = await running.client.post(
            "/api/v1/api-keys", json={"name": "x", "role": "viewer"}, headers=bearer(editor)
        )
        assert response.status_code == 403
