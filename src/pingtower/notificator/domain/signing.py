"""HMAC-SHA256 signatures for webhook bodies, so receivers can check a message is ours.

The signed string is `<timestamp>.<body>`: the timestamp travels in its own header and is covered
by the signature, so a captured request cannot be replayed later with a fresh timestamp, and a
receiver rejects timestamps outside its tolerance.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-PingTower-Signature"
TIMESTAMP_HEADER = "X-PingTower-Timestamp"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value: `sha256=<hex digest>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp: int,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: recompute in constant time and refuse stale timestamps."""
    if abs(now - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
