"""Session tokens and usernames."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from pingtower.common.security import mint_api_key
from pingtower.identity.bootstrap import NewAdmin, banner_lines
from pingtower.identity.domain.tokens import looks_like_session, mint_session, session_digest
from pingtower.identity.domain.users import is_valid_username, normalize_username

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def test_a_session_token_is_random_and_only_its_digest_is_kept() -> None:
    first, second = mint_session(NOW, timedelta(hours=12)), mint_session(NOW, timedelta(hours=12))
    assert first.token != second.token
    assert first.digest == hashlib.sha256(first.token.encode()).digest()
    assert first.token.encode() not in first.digest
    assert first.expires_at == NOW + timedelta(hours=12)


def test_session_tokens_are_told_apart_from_api_keys_and_other_bearers() -> None:
    session = mint_session(NOW, timedelta(hours=1)).token
    api_key, _ = mint_api_key("default", "viewer", "ci", created_by="admin", now=NOW)
    assert looks_like_session(session)
    assert not looks_like_session(api_key)
    assert not looks_like_session("eyJhbGciOiJSUzI1NiJ9.e30.sig")
    assert not looks_like_session(session + "x")


def test_the_digest_depends_on_every_character() -> None:
    token = mint_session(NOW, timedelta(hours=1)).token
    assert session_digest(token) != session_digest(token[:-1] + ("A" if token[-1] != "A" else "B"))


def test_usernames_are_case_insensitive_and_restricted() -> None:
    assert normalize_username("  Alice@Example.org ") == "alice@example.org"
    assert is_valid_username("alice@example.org")
    assert is_valid_username("ops-bot_2")
    assert not is_valid_username("")
    assert not is_valid_username(".hidden")
    assert not is_valid_username("with space")
    assert not is_valid_username("a" * 101)


def test_the_banner_shows_a_generated_password_and_never_a_configured_one() -> None:
    generated = banner_lines(NewAdmin("admin", "s3cret-generated"))
    assert any("s3cret-generated" in line for line in generated)
    configured = banner_lines(NewAdmin("admin", None))
    assert configured
    assert all("PINGTOWER_ADMIN_PASSWORD" in line for line in configured)
    assert banner_lines(None) == []
