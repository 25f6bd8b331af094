"""Webhook signatures that a receiver can verify, and that resist tampering and replay."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from pingtower.notificator.domain.signing import sign, verify

secrets = st.text(min_size=16, max_size=64)
bodies = st.binary(max_size=2000)
NOW = 1_800_000_000


@given(secrets, bodies)
def test_a_receiver_verifies_what_we_sign(secret: str, body: bytes) -> None:
    assert verify(secret, NOW, body, sign(secret, NOW, body), now=NOW + 5)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"k" * 16, b"1800000000.{}", hashlib.sha256).hexdigest()
    assert sign("k" * 16, NOW, b"{}") == f"sha256={expected}"


@given(secrets, bodies, st.binary(min_size=1, max_size=10))
def test_a_changed_body_fails_verification(secret: str, body: bytes, extra: bytes) -> None:
    assert not verify(secret, NOW, body + extra, sign(secret, NOW, body), now=NOW)


def test_a_wrong_secret_fails_verification() -> None:
    assert not verify("b" * 16, NOW, b"{}", sign("a" * 16, NOW, b"{}"), now=NOW)


def test_an_old_timestamp_is_refused_as_a_replay() -> None:
    signature = sign("a" * 16, NOW, b"{}")
    assert verify("a" * 16, NOW, b"{}", signature, now=NOW + 299)
    assert not verify("a" * 16, NOW, b"{}", signature, now=NOW + 301)


def test_moving_the_timestamp_breaks_the_signature() -> None:
    signature = sign("a" * 16, NOW, b"{}")
    assert not verify("a" * 16, NOW + 60, b"{}", signature, now=NOW + 60)
