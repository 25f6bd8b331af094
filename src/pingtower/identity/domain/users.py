"""Rules about user accounts that do not depend on storage."""

from __future__ import annotations

import re

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._@-]{0,99}$"
_USERNAME = re.compile(USERNAME_PATTERN)
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # Argon2 would hash anything; a cap keeps a request cheap


def normalize_username(raw: str) -> str:
    """Usernames are case-insensitive: `Admin` and `admin` are one account."""
    return raw.strip().lower()


def is_valid_username(username: str) -> bool:
    return _USERNAME.match(username) is not None
