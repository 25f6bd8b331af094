"""Webhook channel settings, and the egress guard on its requests."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pingtower.notificator.channels import REGISTRY, ChannelError, Message, SendContext
from pingtower.notificator.channels.webhook import WebhookSettings


def test_the_webhook_type_is_registered_by_name() -> None:
    assert REGISTRY["webhook"].settings_model is WebhookSettings


def test_secret_fields_are_declared() -> None:
    assert set(WebhookSettings.SECRET_FIELDS) == {"secret", "headers"}


@pytest.mark.parametrize(
    "settings",
    [
        {"url": "ftp://example.com"},
        {"url": "https://example.com", "method": "DELETE"},
        {"url": "https://example.com", "secret": "short"},
        {"url": "https://example.com", "headers": {"x-pingtower-timestamp": "1"}},
        {"url": "https://example.com", "body_template": "{{ unclosed"},
        {"url": "https://example.com", "unknown": 1},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WebhookSettings.model_validate(settings)


async def test_a_private_address_is_refused_for_good_when_private_targets_are_off() -> None:
    settings = WebhookSettings.model_validate({"url": "http://127.0.0.1:9/hook"})
    context = SendContext(delivery_id="d1", allow_private=False, timeout_seconds=2)
    with pytest.raises(ChannelError) as caught:
        await REGISTRY["webhook"].send(Message("down", "t", "x"), settings, context)
    assert caught.value.permanent
