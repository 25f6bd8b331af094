"""Encryption at rest of channel secrets (tokens, passwords, signing keys).

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`. The key is derived from a secret string:
the setting PINGTOWER_SECRET_KEY (at least 32 characters), required in the distributed mode
(every replica must share it), and in the embedded mode a random key generated once into the
data directory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from pingtower.common.settings import Mode, Settings, SettingsError

ENV_VAR = "PINGTOWER_SECRET_KEY"
KEY_FILE = "notificator-secret.key"


class SecretBox:
    def __init__(self, key_material: str) -> None:
        digest = hashlib.sha256(b"pingtower-notificator-secrets:" + key_material.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, values: dict[str, object]) -> str:
        return self._fernet.encrypt(json.dumps(values).encode()).decode()

    def open(self, token: str | None) -> dict[str, object]:
        if not token:
            return {}
        try:
            loaded = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise SecretKeyError(
                "channel secrets cannot be decrypted: PINGTOWER_SECRET_KEY changed?"
            ) from None
        assert isinstance(loaded, dict)
        return loaded


class SecretKeyError(SettingsError):
    pass


def load_key(settings: Settings) -> str:
    """The key material; a clear error when the distributed mode has none."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    if settings.mode is Mode.DISTRIBUTED:
        raise SecretKeyError(
            f"{ENV_VAR}: required in the distributed mode (the same value on every notificator "
            "replica), at least 32 characters, e.g. from: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return _embedded_key(Path(settings.data_dir))


def _embedded_key(data_dir: Path) -> str:
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    # O_EXCL: if two processes race to create it, one wins and the other reads the winner's.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
