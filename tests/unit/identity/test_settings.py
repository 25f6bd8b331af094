"""The identity settings: defaults, database URL and the admin password policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from pingtower.common.settings import Settings, SettingsError, load_settings
from pingtower.identity.service import identity_database_url


def test_the_identity_database_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert identity_database_url(settings) == (
        f"sqlite+aiosqlite:///{(tmp_path / 'identity.sqlite3').resolve()}"
    )
    assert settings.session_hours == 12
    assert settings.admin_password is None


def test_a_postgresql_identity_database_is_accepted_and_given_the_async_driver() -> None:
    settings = Settings(identity_database_url="postgresql://u:p@db:5432/identity")
    assert identity_database_url(settings) == "postgresql+asyncpg://u:p@db:5432/identity"


def test_an_unknown_database_scheme_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="PINGTOWER_IDENTITY_DATABASE_URL"):
        load_settings(identity_database_url="mysql://db/identity")


def test_a_short_admin_password_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="PINGTOWER_ADMIN_PASSWORD"):
        load_settings(admin_password="short")


def test_sessions_last_between_an_hour_and_a_month() -> None:
    with pytest.raises(SettingsError, match="PINGTOWER_SESSION_HOURS"):
        load_settings(session_hours=0)
    with pytest.raises(SettingsError, match="PINGTOWER_SESSION_HOURS"):
        load_settings(session_hours=24 * 31)
