"""Settings are read from PINGTOWER_* variables and refuse bad values with a message naming them."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from pingtower.common.settings import (
    SERVICES,
    Mode,
    ServiceName,
    Settings,
    SettingsError,
    describe_settings,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the variables it sets, not the developer's or CI's."""
    import os

    for name in list(os.environ):
        if name.startswith("PINGTOWER_"):
            monkeypatch.delenv(name)


def test_defaults_describe_the_embedded_mode() -> None:
    settings = load_settings()
    assert settings.mode is Mode.EMBEDDED
    assert settings.broker_url is None
    # A single user on a laptop monitors local services.
    assert settings.allow_private_targets is True


def test_the_distributed_mode_refuses_private_targets_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PINGTOWER_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    assert load_settings().allow_private_targets is False
    monkeypatch.setenv("PINGTOWER_ALLOW_PRIVATE_TARGETS", "false")
    monkeypatch.delenv("PINGTOWER_BROKER_URL")
    assert load_settings().allow_private_targets is False


def test_values_come_from_pingtower_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINGTOWER_PORT", "9100")
    monkeypatch.setenv("PINGTOWER_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    monkeypatch.setenv("PINGTOWER_ALLOW_PRIVATE_TARGETS", "true")
    settings = load_settings()
    assert settings.port == 9100
    assert settings.mode is Mode.DISTRIBUTED
    assert settings.allow_private_targets is True


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PINGTOWER_PORT", "70000"),
        ("PINGTOWER_PORT", "eighty"),
        ("PINGTOWER_DELIVERY_LIMIT", "0"),
        ("PINGTOWER_OUTBOX_POLL_SECONDS", "-1"),
        ("PINGTOWER_BROKER_URL", "redis://127.0.0.1:6379"),
        ("PINGTOWER_BROKER_NAMESPACE", "has spaces"),
        ("PINGTOWER_LOG_LEVEL", "chatty"),
        ("PINGTOWER_PINGER_DATABASE_URL", "mysql://root@127.0.0.1/pinger"),
        ("PINGTOWER_ALLOW_PRIVATE_TARGETS", "perhaps"),
    ],
)
def test_a_bad_value_is_refused_with_a_message_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert variable in message
    # Only the bad variable is blamed.
    assert message.count("PINGTOWER_") == 1


def test_every_bad_value_is_listed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINGTOWER_PORT", "-5")
    monkeypatch.setenv("PINGTOWER_PREFETCH", "0")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "PINGTOWER_PORT" in str(refused.value)
    assert "PINGTOWER_PREFETCH" in str(refused.value)


def test_overrides_are_validated_like_variables() -> None:
    with pytest.raises(SettingsError, match="PINGTOWER_PROBE_CONCURRENCY"):
        load_settings(probe_concurrency=0)


def test_plain_postgresql_urls_are_normalised_to_the_asyncpg_driver() -> None:
    settings = load_settings(
        pinger_database_url="postgresql://pinger:secret@db.internal:5432/pinger"
    )
    assert (
        settings.database_url("pinger")
        == "postgresql+asyncpg://pinger:secret@db.internal:5432/pinger"
    )


def test_asyncpg_and_aiosqlite_urls_are_kept_as_given() -> None:
    settings = load_settings(
        notificator_database_url="postgresql+asyncpg://n@127.0.0.1:5432/notificator",
        statistics_database_url="sqlite+aiosqlite:////var/lib/pingtower/statistics.sqlite3",
    )
    assert settings.database_url("notificator") == (
        "postgresql+asyncpg://n@127.0.0.1:5432/notificator"
    )
    assert settings.database_url("statistics") == (
        "sqlite+aiosqlite:////var/lib/pingtower/statistics.sqlite3"
    )


def test_database_url_defaults_to_one_sqlite_file_per_service_in_the_data_dir(
    tmp_path: Path,
) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    urls = {service: settings.database_url(service) for service in get_args(ServiceName)}
    for service, url in urls.items():
        assert url == f"sqlite+aiosqlite:///{(tmp_path / 'data' / service).resolve()}.sqlite3"
    assert set(urls) == set(SERVICES)
    assert len(set(urls.values())) == len(SERVICES)


def test_a_relative_data_dir_gives_absolute_sqlite_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = load_settings(data_dir=Path("relative")).database_url("pinger")
    path = Path(url.removeprefix("sqlite+aiosqlite:///"))
    assert path.is_absolute()
    assert path == tmp_path.resolve() / "relative" / "pinger.sqlite3"


def test_every_setting_is_documented() -> None:
    rows = describe_settings()
    assert {variable for variable, _, _ in rows} == {
        f"PINGTOWER_{name.upper()}" for name in Settings.model_fields
    }
    undocumented = [variable for variable, _, description in rows if not description.strip()]
    assert undocumented == []
