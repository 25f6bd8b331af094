"""Chat channels reached by an incoming-webhook URL: Slack, Discord, Microsoft Teams.

The webhook URL is the credential (whoever holds it can post), so it is a secret: encrypted at
rest and shown as "set". Any http(s) URL is accepted, so tests point it at a local server.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import AnyHttpUrl, Field

from pingtower.notificator.channels.base import (
    ChannelSettings,
    ChannelType,
    Message,
    SendContext,
    SendResult,
    register,
)
from pingtower.notificator.channels.http import send_http

DISCORD_LIMIT = 2000


class WebhookUrlSettings(ChannelSettings):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("webhook_url",)
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ("webhook_url",)
    webhook_url: AnyHttpUrl
    username: str | None = Field(None, max_length=80)


class _ChatChannel(ChannelType):
    settings_model = WebhookUrlSettings

    def payload(self, message: Message, settings: WebhookUrlSettings) -> dict[str, Any]:
        raise NotImplementedError

    async def send(
        self, message: Message, settings: ChannelSettings, context: SendContext
    ) -> SendResult:
        assert isinstance(settings, WebhookUrlSettings)
        url = str(settings.webhook_url)
        result, _ = await send_http(
            context,
            "POST",
            url,
            body=json.dumps(self.payload(message, settings)).encode(),
            headers={"Content-Type": "application/json"},
            redact=(url,),
        )
        return result


class SlackChannel(_ChatChannel):
    name = "slack"

    def payload(self, message: Message, settings: WebhookUrlSettings) -> dict[str, Any]:
        body: dict[str, Any] = {"text": f"*{message.title}*\n{message.text}"}
        if settings.username:
            body["username"] = settings.username
        return body


class DiscordChannel(_ChatChannel):
    name = "discord"

    def payload(self, message: Message, settings: WebhookUrlSettings) -> dict[str, Any]:
        content = f"**{message.title}**\n{message.text}"
        if len(content) > DISCORD_LIMIT:
            content = content[: DISCORD_LIMIT - 1] + "…"
        body: dict[str, Any] = {"content": content}
        if settings.username:
            body["username"] = settings.username
        return body


class TeamsChannel(_ChatChannel):
    name = "teams"

    def payload(self, message: Message, settings: WebhookUrlSettings) -> dict[str, Any]:
        colour = {"recovered": "2EB886", "degraded": "F2C744"}.get(message.kind, "D63333")
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": message.title,
            "themeColor": colour,
            "title": message.title,
            # Teams renders Markdown: two spaces before a newline keep the line breaks.
            "text": message.text.replace("\n", "  \n"),
        }


register(SlackChannel)
register(DiscordChannel)
register(TeamsChannel)
