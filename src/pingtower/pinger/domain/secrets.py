"""Secrets inside monitor settings: write-only values that the API never returns.

A secret is a settings value whose key says so (`password`, `bearer_token`, `token`, ...) or a
request header that carries credentials (`Authorization`, `Cookie`, `X-Api-Key`, ...). The rules
are generic over the settings dictionary so that a new check type with a `password` field is
covered without touching this module.

- Reading: every secret that is set is shown as `SECRET_MASK`.
- Writing: `SECRET_MASK` given back means "keep the stored value"; a secret (or a block holding
  one, like `basic_auth`) left out of the new settings is kept too, so that a client that read the
  masked settings and changed something else does not wipe credentials; `null` removes it.
"""

from __future__ import annotations

import re
from typing import Any

from pingtower.pinger.domain.monitor import InvalidSettingError

SECRET_MASK = "<set>"  # noqa: S105 - the placeholder shown instead of a secret

_SECRET_KEYS = frozenset(
    {"password", "bearer_token", "token", "secret", "api_key", "client_secret", "private_key"}
)
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token"}
)
# Vendor headers follow no standard; these words in a header name mean a credential.
_SECRET_HEADER_WORDS = re.compile(r"token|secret|api-?key|password|session|auth")
_HEADER_BLOCKS = frozenset({"headers"})


def is_secret(parent: str | None, key: str) -> bool:
    """Whether `key`, found in the block named `parent` (None at the top), holds a secret."""
    if parent in _HEADER_BLOCKS:
        name = key.strip().lower().replace("_", "-")
        return name in _SECRET_HEADERS or _SECRET_HEADER_WORDS.search(name) is not None
    return key.lower() in _SECRET_KEYS


def mask_secrets(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of the settings with every secret that is set replaced by SECRET_MASK."""
    return _mask(settings, None)


def _mask(block: dict[str, Any], parent: str | None) -> dict[str, Any]:
    masked: dict[str, Any] = {}
    for key, value in block.items():
        if value is not None and is_secret(parent, key):
            masked[key] = SECRET_MASK
        elif isinstance(value, dict):
            masked[key] = _mask(value, key)
        else:
            masked[key] = value
    return masked


def _holds_secret(block: dict[str, Any], parent: str | None) -> bool:
    return any(
        (value is not None and is_secret(parent, key))
        or (isinstance(value, dict) and _holds_secret(value, key))
        for key, value in block.items()
    )


def merge_secrets(new: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """The settings to store: `new` with masks and omitted secrets taken from `current`.

    `current` is None when there is nothing stored to keep (a new monitor, or a change of type);
    a mask then has nothing to stand for and is an error naming the field.
    """
    merged = _merge(new, current or {}, None)
    _reject_masks(merged, None, "settings")
    return merged


def _merge(new: dict[str, Any], current: dict[str, Any], parent: str | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, value in new.items():
        stored = current.get(key)
        if value is None and parent in _HEADER_BLOCKS:
            continue  # a header set to null is removed
        if value == SECRET_MASK and is_secret(parent, key) and stored is not None:
            merged[key] = stored
        elif isinstance(value, dict):
            merged[key] = _merge(value, stored if isinstance(stored, dict) else {}, key)
        else:
            merged[key] = value
    for key, stored in current.items():
        if key in new or stored is None:
            continue
        if is_secret(parent, key) or (isinstance(stored, dict) and _holds_secret(stored, key)):
            merged[key] = stored
    return merged


def _reject_masks(block: dict[str, Any], parent: str | None, path: str) -> None:
    for key, value in block.items():
        field = f"{path}.{key}"
        if value == SECRET_MASK and is_secret(parent, key):
            raise InvalidSettingError(
                field, f"{SECRET_MASK} stands for a stored secret and none is stored; give it"
            )
        if isinstance(value, dict):
            _reject_masks(value, key, field)
