"""The first start creates the admin; later starts leave it alone and print nothing."""

from __future__ import annotations

from pingtower.identity.service import admin_banner
from pingtower.identity.store import users
from tests.integration.identity.conftest import RunIdentity, sqlite_only


async def test_a_generated_admin_password_is_shown_once_and_logs_in(
    run_identity: RunIdentity,
) -> None:
    async with run_identity(admin_password=None) as running:
        assert running.identity.new_admin is not None
        password = running.identity.new_admin.generated_password
        assert password is not None
        lines = admin_banner(running.identity)
        assert any(password in line for line in lines)
        assert admin_banner(running.identity) == []  # once
        assert (await running.login("admin", password)).status_code == 200


async def test_a_second_start_creates_no_second_admin_and_shows_no_password(
    run_identity: RunIdentity,
) -> None:
    async with run_identity(admin_password=None) as first:
        password = first.identity.new_admin.generated_password if first.identity.new_admin else None
    async with run_identity(admin_password=None) as second:
        assert second.identity.new_admin is None
        assert admin_banner(second.identity) == []
        async with second.identity.sessions() as session:
            assert await users.count_all(session) == 1
        assert password is not None
        assert (await second.login("admin", password)).status_code == 200


@sqlite_only
async def test_a_configured_admin_password_is_used_and_never_printed(
    run_identity: RunIdentity,
) -> None:
    async with run_identity(admin_password="configured-password-123") as running:
        lines = admin_banner(running.identity)
        assert lines
        assert not any("configured-password-123" in line for line in lines)
        assert (await running.login("admin", "configured-password-123")).status_code == 200


async def test_the_admin_password_setting_is_ignored_once_the_admin_exists(
    run_identity: RunIdentity,
) -> None:
    async with run_identity(admin_password="first-password-1234"):
        pass
    async with run_identity(admin_password="second-password-1234") as running:
        assert (await running.login("admin", "second-password-1234")).status_code == 401
        assert (await running.login("admin", "first-password-1234")).status_code == 200
