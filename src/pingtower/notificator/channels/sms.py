"""SMS through Twilio's Messages API (form-encoded, HTTP basic auth with the account SID and the
auth token). One request per recipient; the base URL is configurable for tests."""

from __future__ import annotations

import base64
import re
from typing import ClassVar

from pydantic import AnyHttpUrl, Field, field_validator

from pingtower.notificator.channels.base import (
    ChannelSettings,
    ChannelType,
    Message,
    SendContext,
    SendResult,
    register,
)
from pingtower.notificator.channels.http import send_http

PHONE = r"^\+[1-9][0-9]{6,14}$"
SMS_LIMIT = 640  # four concatenated segments: enough for a title, the error and a link


class TwilioSettings(ChannelSettings):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("auth_token",)
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ("api_base_url",)
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: str = Field(min_length=16, max_length=200)
    from_number: str = Field(pattern=PHONE)
    to_numbers: list[str] = Field(min_length=1, max_length=20)
    api_base_url: AnyHttpUrl = AnyHttpUrl("https://api.twilio.com")

    @field_validator("to_numbers")
    @classmethod
    def _e164(cls, value: list[str]) -> list[str]:
        for number in value:
            if not re.match(PHONE, number):
                raise ValueError(f"not an E.164 phone number: {number}")
        return value


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class TwilioSmsChannel(ChannelType):
    name = "sms"
    settings_model = TwilioSettings

    async def send(
        self, message: Message, settings: ChannelSettings, context: SendContext
    ) -> SendResult:
        assert isinstance(settings, TwilioSettings)
        base = str(settings.api_base_url).rstrip("/")
        url = f"{base}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        text = f"{message.title}\n{message.text}"[:SMS_LIMIT]
        result = SendResult()
        for number in settings.to_numbers:
            result, _ = await send_http(
                context,
                "POST",
                url,
                data={"To": number, "From": settings.from_number, "Body": text},
                headers={"Authorization": basic_auth(settings.account_sid, settings.auth_token)},
                redact=(settings.auth_token,),
            )
        return result


register(TwilioSmsChannel)
