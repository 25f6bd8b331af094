"""Telegram, through the Bot API's sendMessage. The bot token is a secret and is part of the
URL, so it is scrubbed from every error text."""

from __future__ import annotations

import json
from typing import ClassVar

from pydantic import AnyHttpUrl, Field

from pingtower.notificator.channels.base import (
    ChannelError,
    ChannelSettings,
    ChannelType,
    Message,
    SendContext,
    SendResult,
    register,
)
from pingtower.notificator.channels.http import send_http

TELEGRAM_LIMIT = 4096


class TelegramSettings(ChannelSettings):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("bot_token",)
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ("api_base_url",)
    bot_token: str = Field(pattern=r"^[0-9]+:[A-Za-z0-9_-]+$", max_length=200)
    chat_id: str = Field(pattern=r"^(-?[0-9]+|@[A-Za-z0-9_]{5,32})$")
    api_base_url: AnyHttpUrl = AnyHttpUrl("https://api.telegram.org")


class TelegramChannel(ChannelType):
    name = "telegram"
    settings_model = TelegramSettings

    async def send(
        self, message: Message, settings: ChannelSettings, context: SendContext
    ) -> SendResult:
        assert isinstance(settings, TelegramSettings)
        base = str(settings.api_base_url).rstrip("/")
        text = f"{message.title}\n\n{message.text}"[:TELEGRAM_LIMIT]
        body = {"chat_id": settings.chat_id, "text": text, "disable_web_page_preview": True}
        result, answer = await send_http(
            context,
            "POST",
            f"{base}/bot{settings.bot_token}/sendMessage",
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            redact=(settings.bot_token,),
        )
        try:
            ok = json.loads(answer).get("ok") is True
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise ChannelError(
                "Telegram did not confirm the message", status_code=result.status_code
            )
        return result


register(TelegramChannel)
