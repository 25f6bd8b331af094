"""Password hashing with Argon2id (argon2-cffi, RFC 9106 low-memory profile by default).

Verification costs the same whether or not the user exists: an unknown username is checked
against a dummy hash, so the response time does not reveal which usernames exist. Hashing is
CPU-heavy, so the async helpers run it in a worker thread.
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        # Same parameters as real hashes, so checking it takes as long as checking one of them.
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True when `password` matches `stored`; with `stored` None (no such user) the dummy
        hash is checked and the answer is always False."""
        try:
            ok = self.hasher.verify(stored or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return ok and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        """True when `stored` was made with weaker parameters than today's."""
        return self.hasher.check_needs_rehash(stored)

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify, stored, password)


def generate_password() -> str:
    """A password for the first admin when none is configured: 128 bits, easy to copy."""
    return secrets.token_urlsafe(16)
