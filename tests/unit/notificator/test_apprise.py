"""The Apprise channel's settings and its egress check."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pingtower.common.egress import EgressDeniedError
from pingtower.notificator.channels.apprise_urls import AppriseSettings, check_hosts


def test_apprise_urls_are_a_secret_and_must_name_a_known_service() -> None:
    assert AppriseSettings.SECRET_FIELDS == ("urls",)
    AppriseSettings(urls=["json://hooks.example.com/in", "tgram://123456789:abcdefg_hijk/42/"])
    with pytest.raises(ValidationError, match=r"urls\[1\] is not an Apprise URL"):
        AppriseSettings(urls=["json://hooks.example.com/in", "nosuchservice://token"])
    with pytest.raises(ValidationError):
        AppriseSettings(urls=[])


async def test_a_url_whose_host_is_loopback_is_refused_unless_private_targets_are_allowed() -> None:
    urls = ["json://127.0.0.1:9/hook"]
    with pytest.raises(EgressDeniedError, match=r"127\.0\.0\.1"):
        await check_hosts(urls, allow_private=False)
    await check_hosts(urls, allow_private=True)


async def test_a_name_resolving_to_loopback_is_refused_too() -> None:
    with pytest.raises(EgressDeniedError):
        await check_hosts(["json://localhost:9/hook"], allow_private=False)
