"""Argon2id password hashes, and the same work for an unknown user."""

from __future__ import annotations

from argon2 import PasswordHasher

from pingtower.identity.passwords import Passwords, generate_password

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_a_hash_is_argon2id_and_salted() -> None:
    passwords = Passwords(FAST)
    first, second = passwords.hash("correct horse battery"), passwords.hash("correct horse battery")
    assert first.startswith("$argon2id$")
    assert first != second
    assert "correct horse" not in first


def test_the_right_password_verifies_and_a_wrong_one_does_not() -> None:
    passwords = Passwords(FAST)
    stored = passwords.hash("correct horse battery")
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse batterY")
    assert not passwords.verify(stored, "")


def test_an_unknown_user_is_checked_against_a_dummy_hash_and_always_refused() -> None:
    calls: list[str] = []

    class Spy(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            calls.append(str(hash))
            return super().verify(hash, password)

    passwords = Passwords(Spy(time_cost=1, memory_cost=1024, parallelism=1))
    assert not passwords.verify(None, "anything at all")
    assert len(calls) == 1
    assert calls[0].startswith("$argon2id$")


def test_a_garbled_stored_hash_is_refused_not_raised() -> None:
    assert not Passwords(FAST).verify("not-a-hash", "whatever")


def test_a_hash_made_with_weaker_parameters_needs_rehashing() -> None:
    weak = Passwords(FAST).hash("correct horse battery")
    stronger = Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    assert stronger.needs_rehash(weak)
    assert not stronger.needs_rehash(stronger.hash("correct horse battery"))


async def test_async_helpers_give_the_same_answers() -> None:
    passwords = Passwords(FAST)
    stored = await passwords.hash_async("correct horse battery")
    assert await passwords.verify_async(stored, "correct horse battery")
    assert not await passwords.verify_async(stored, "wrong")


def test_generated_passwords_are_long_and_different() -> None:
    first, second = generate_password(), generate_password()
    assert len(first) >= 20
    assert first != second
