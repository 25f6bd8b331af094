"""Session tokens of the built-in login: random, opaque, stored only as a SHA-256 digest.

A token has 256 bits of entropy, so a fast digest is enough (a slow password hash would add
nothing) and the digest can be the lookup key. The prefix lets an authenticator tell a session
token from an API key or a JWT without a database round trip.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

SESSION_PREFIX = "pts"
_SESSION = re.compile(rf"^{SESSION_PREFIX}_[A-Za-z0-9_-]{{43}}$")


@dataclass(frozen=True)
class NewSession:
    token: str  # handed to the client once
    digest: bytes  # what is stored
    expires_at: datetime


def mint_session(now: datetime, lifetime: timedelta) -> NewSession:
    token = f"{SESSION_PREFIX}_{secrets.token_urlsafe(32)}"
    return NewSession(token, session_digest(token), now + lifetime)


def looks_like_session(token: str) -> bool:
    return _SESSION.match(token) is not None


def session_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
