"""Channel secrets encrypted at rest with a key from the environment or the data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pingtower.common.settings import Settings, SettingsError, load_settings
from pingtower.notificator.secrets import KEY_FILE, SecretBox, SecretKeyError, load_key


def test_sealed_values_open_again_and_hide_the_plaintext() -> None:
    box = SecretBox("k" * 40)
    token = box.seal({"secret": "hunter2-hunter2-hunter2"})
    assert "hunter2" not in token
    assert box.open(token) == {"secret": "hunter2-hunter2-hunter2"}
    assert box.open(None) == {}


def test_another_key_cannot_open_a_secret() -> None:
    token = SecretBox("a" * 40).seal({"secret": "x"})
    with pytest.raises(SecretKeyError, match="PINGTOWER_SECRET_KEY"):
        SecretBox("b" * 40).open(token)


def test_the_distributed_mode_requires_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PINGTOWER_SECRET_KEY", raising=False)
    settings = Settings(broker_url="amqp://guest:guest@127.0.0.1:5672/")
    with pytest.raises(SecretKeyError, match="required in the distributed mode"):
        load_key(settings)


def test_a_short_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINGTOWER_SECRET_KEY", "short")
    with pytest.raises(SettingsError, match=r"PINGTOWER_SECRET_KEY.*at least 32"):
        load_settings()


def test_the_configured_key_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINGTOWER_SECRET_KEY", "k" * 40)
    assert load_key(Settings(broker_url="amqp://guest:guest@127.0.0.1:5672/")) == "k" * 40


def test_the_embedded_mode_generates_one_key_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PINGTOWER_SECRET_KEY", raising=False)
    first = load_key(Settings(data_dir=tmp_path))
    assert load_key(Settings(data_dir=tmp_path)) == first
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
