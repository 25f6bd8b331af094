"""Secrets in monitor settings are write-only: masked on the way out, kept when given back."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingtower.pinger.domain.monitor import InvalidSettingError
from pingtower.pinger.domain.secrets import SECRET_MASK, is_secret, mask_secrets, merge_secrets

STORED: dict[str, Any] = {
    "method": "GET",
    "bearer_token": "t0ken",
    "basic_auth": None,
    "headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "Accept": "text/html"},
    "expected_status": ["200-299"],
}


@pytest.mark.parametrize(
    ("parent", "key"),
    [
        (None, "bearer_token"),
        (None, "password"),
        ("basic_auth", "password"),
        ("headers", "Authorization"),
        ("headers", "cookie"),
        ("headers", "X-Api-Key"),
        ("headers", "X-Vendor-Token"),
        ("headers", "x_auth_user"),
    ],
)
def test_credentials_are_secrets(parent: str | None, key: str) -> None:
    assert is_secret(parent, key)


@pytest.mark.parametrize(
    ("parent", "key"),
    [(None, "method"), (None, "headers"), ("basic_auth", "username"), ("headers", "Accept")],
)
def test_ordinary_settings_are_not_secrets(parent: str | None, key: str) -> None:
    assert not is_secret(parent, key)


def test_reading_shows_every_set_secret_as_the_mask_and_nothing_else_changes() -> None:
    masked = mask_secrets({**STORED, "basic_auth": {"username": "u", "password": "p"}})
    assert masked["bearer_token"] == SECRET_MASK
    assert masked["basic_auth"] == {"username": "u", "password": SECRET_MASK}
    assert masked["headers"] == {
        "Authorization": SECRET_MASK,
        "X-Api-Key": SECRET_MASK,
        "Accept": "text/html",
    }
    assert masked["expected_status"] == ["200-299"]


def test_an_unset_secret_is_shown_as_unset() -> None:
    assert mask_secrets({"bearer_token": None})["bearer_token"] is None


def test_giving_back_the_masked_settings_keeps_the_stored_secrets() -> None:
    assert merge_secrets(mask_secrets(STORED), STORED) == STORED


def test_settings_that_omit_a_secret_keep_it() -> None:
    merged = merge_secrets({"expected_status": ["200"], "headers": {"Accept": "*/*"}}, STORED)
    assert merged["bearer_token"] == "t0ken"
    assert merged["headers"] == {"Accept": "*/*", "Authorization": "Bearer x", "X-Api-Key": "k"}
    assert merged["expected_status"] == ["200"]


def test_settings_that_omit_a_block_holding_a_secret_keep_the_block() -> None:
    stored = {"basic_auth": {"username": "u", "password": "p"}}
    assert merge_secrets({}, stored) == stored


def test_null_removes_a_secret_and_a_null_header_is_dropped() -> None:
    merged = merge_secrets({"bearer_token": None, "headers": {"Authorization": None}}, STORED)
    assert merged["bearer_token"] is None
    assert merged["headers"] == {"X-Api-Key": "k"}


def test_a_new_value_replaces_the_stored_secret() -> None:
    assert merge_secrets({"bearer_token": "new"}, STORED)["bearer_token"] == "new"


def test_the_mask_without_a_stored_secret_is_an_error_naming_the_field() -> None:
    with pytest.raises(InvalidSettingError) as error:
        merge_secrets({"basic_auth": {"username": "u", "password": SECRET_MASK}}, None)
    assert error.value.field == "settings.basic_auth.password"


def test_the_mask_as_an_ordinary_value_is_kept_verbatim() -> None:
    assert merge_secrets({"keyword": SECRET_MASK}, None) == {"keyword": SECRET_MASK}


header_names = st.sampled_from(["Authorization", "Cookie", "X-Api-Key", "Accept", "X-Trace"])
texts = st.text(min_size=1, max_size=20)
http_settings = st.fixed_dictionaries(
    {
        "bearer_token": st.none() | texts,
        "basic_auth": st.none() | st.fixed_dictionaries({"username": texts, "password": texts}),
        "headers": st.dictionaries(header_names, texts, max_size=5),
        "keyword": st.none() | texts,
    }
)


@given(http_settings)
def test_no_secret_value_survives_masking(settings: dict[str, Any]) -> None:
    masked = mask_secrets(settings)
    if settings["bearer_token"] is not None:
        assert masked["bearer_token"] == SECRET_MASK
    if settings["basic_auth"] is not None:
        assert masked["basic_auth"]["password"] == SECRET_MASK
    for name, value in masked["headers"].items():
        assert (value == SECRET_MASK) == is_secret("headers", name)


@given(http_settings)
def test_a_masked_round_trip_restores_the_stored_settings(settings: dict[str, Any]) -> None:
    assert merge_secrets(mask_secrets(settings), settings) == settings
