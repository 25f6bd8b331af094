"""Webhook channel: a JSON request to a URL, with custom headers and an HMAC-SHA256 signature.

Headers count as secrets (they often carry a bearer token), as does the signing key.
"""

from __future__ import annotations

import json
import time
from typing import ClassVar, Literal

from pydantic import AnyHttpUrl, Field, field_validator

# The module, not its names: rendering imports the channel base, which loads this package.
from pingtower.notificator import rendering
from pingtower.notificator.channels.base import (
    ChannelSettings,
    ChannelType,
    Message,
    SendContext,
    SendResult,
    register,
)
from pingtower.notificator.channels.http import send_http
from pingtower.notificator.domain.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

DELIVERY_HEADER = "X-PingTower-Delivery"
_RESERVED = {SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower(), DELIVERY_HEADER.lower()}


class WebhookSettings(ChannelSettings):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("secret", "headers")
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ("url",)

    url: AnyHttpUrl
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    secret: str | None = Field(None, min_length=16, max_length=512)
    body_template: str | None = Field(
        None,
        max_length=20_000,
        description="Jinja2 template of the JSON body (sandboxed); default: a documented JSON.",
    )

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in _RESERVED or name.lower() in {"content-length", "host"}:
                raise ValueError(f"header {name} is set by PingTower")
        return value

    @field_validator("body_template")
    @classmethod
    def _template_parses(cls, value: str | None) -> str | None:
        if value is not None and (error := rendering.check_template(value)) is not None:
            raise ValueError(f"template does not parse: {error}")
        return value


class WebhookChannel(ChannelType):
    name = "webhook"
    settings_model = WebhookSettings

    async def send(
        self, message: Message, settings: ChannelSettings, context: SendContext
    ) -> SendResult:
        assert isinstance(settings, WebhookSettings)
        if settings.body_template:
            body = rendering.render_body(settings.body_template, message).encode()
        else:
            body = json.dumps(
                {
                    "kind": message.kind,
                    "title": message.title,
                    "text": message.text,
                    **message.data,
                },
                separators=(",", ":"),
                default=str,
            ).encode()
        headers = {"Content-Type": "application/json", **settings.headers}
        headers[DELIVERY_HEADER] = context.delivery_id
        if settings.secret:
            timestamp = int(time.time())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(settings.secret, timestamp, body)
        result, _ = await send_http(
            context, settings.method, str(settings.url), body=body, headers=headers
        )
        return result


register(WebhookChannel)
