"""Email channel over SMTP (plain, STARTTLS or implicit TLS; optional login), text + HTML body.

The SMTP server is a user-given address, so it passes the same egress policy as HTTP: the name is
resolved here, every address checked, and aiosmtplib is handed a socket already connected to a
checked address (TLS still verifies the certificate against the name).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from email.message import EmailMessage
from typing import ClassVar, Literal

import aiosmtplib
from markupsafe import escape
from pydantic import Field, field_validator

from pingtower.common.egress import EgressDeniedError, Networks, check_address
from pingtower.notificator.channels.base import (
    ChannelError,
    ChannelSettings,
    ChannelType,
    Message,
    SendContext,
    SendResult,
    register,
)

ADDRESS = r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$"


class EmailSettings(ChannelSettings):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ("host",)

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(587, ge=1, le=65535)
    security: Literal["plain", "starttls", "tls"] = "starttls"
    verify_certificate: bool = True
    username: str | None = Field(None, max_length=320)
    password: str | None = Field(None, max_length=1000)
    from_address: str = Field(pattern=ADDRESS, max_length=320)
    to: list[str] = Field(min_length=1, max_length=50)

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.match(ADDRESS, address):
                raise ValueError(f"not an email address: {address}")
        return value


async def connect_guarded(
    host: str,
    port: int,
    *,
    allow_private: bool,
    connect_seconds: float,
    allow_networks: Networks = (),
) -> socket.socket:
    """A TCP socket connected to `host`, after the egress policy allowed every address."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), connect_seconds
        )
    except (OSError, TimeoutError) as exc:
        raise ChannelError(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        check_address(str(info[4][0]), allow_private=allow_private, allow_networks=allow_networks)
    last: Exception | None = None
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), connect_seconds)
            return sock
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc
    raise ChannelError(f"cannot connect to {host}:{port}: {last}")


def build_email(message: Message, settings: EmailSettings) -> EmailMessage:
    email = EmailMessage()
    email["Subject"] = message.title
    email["From"] = settings.from_address
    email["To"] = ", ".join(settings.to)
    email.set_content(message.text)
    html = "<br>\n".join(str(escape(line)) for line in message.text.splitlines())
    email.add_alternative(
        f"<html><body><h3>{escape(message.title)}</h3><p>{html}</p></body></html>",
        subtype="html",
    )
    return email


class EmailChannel(ChannelType):
    name = "email"
    settings_model = EmailSettings

    async def send(
        self, message: Message, settings: ChannelSettings, context: SendContext
    ) -> SendResult:
        assert isinstance(settings, EmailSettings)
        try:
            sock = await connect_guarded(
                settings.host,
                settings.port,
                allow_private=context.allow_private,
                connect_seconds=context.timeout_seconds,
                allow_networks=context.allow_networks,
            )
        except EgressDeniedError as exc:
            raise ChannelError(f"address refused: {exc}", permanent=True) from exc
        tls_context = ssl.create_default_context()
        if not settings.verify_certificate:
            tls_context.check_hostname = False
            tls_context.verify_mode = ssl.CERT_NONE
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            sock=sock,
            timeout=context.timeout_seconds,
            use_tls=settings.security == "tls",
            start_tls=settings.security == "starttls",
            tls_context=tls_context,
            username=settings.username,
            password=settings.password,
        )
        try:
            async with client:
                await client.send_message(build_email(message, settings))
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx: the server refuses for good (bad recipient, auth); 4xx: try again later.
            raise ChannelError(
                f"SMTP {exc.code}: {exc.message}"[:300], permanent=exc.code >= 500
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise ChannelError(f"{type(exc).__name__}: {exc}"[:300]) from exc
        finally:
            sock.close()
        return SendResult(detail=f"sent to {len(settings.to)} recipient(s)")


register(EmailChannel)
