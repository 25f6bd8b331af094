"""Apprise: any of the services the Apprise library speaks, by Apprise URL.

The URLs carry the credentials (tokens, passwords), so they are secret: encrypted at rest,
write-only in the API.

Egress: Apprise makes its own HTTP requests, outside our guarded client. When the channel is
saved and before each send, the host of every URL that resolves must resolve only to addresses
the egress policy allows (`refusal_for_target`). A URL whose "host" does not resolve is a
service token (tgram://bot-token/chat: Apprise talks to the service's fixed public endpoint), so
there is nothing of ours to reach through it. Not covered: redirects that Apprise follows, and a
name that resolves differently between our check and Apprise's own lookup (DNS rebinding).
"""

from __future__ import annotations

from typing import Any, ClassVar

import apprise
from pydantic import Field, field_validator

from pingtower.common.egress import EgressDeniedError, Networks, refusal_for_target
from pingtower.notificator.channels.base import (
    ChannelError,
    ChannelSettings,
    ChannelType,
    Message,
    SendContext,
    SendResult,
    register,
)

_NOTIFY_TYPES = {
    "recovered": apprise.NotifyType.SUCCESS,
    "latency_ok": apprise.NotifyType.SUCCESS,
    "degraded": apprise.NotifyType.WARNING,
    "latency": apprise.NotifyType.WARNING,
    "cert_expiring": apprise.NotifyType.WARNING,
    "slo": apprise.NotifyType.WARNING,
    "test": apprise.NotifyType.INFO,
}


def _plugin(url: str) -> Any:
    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


class AppriseSettings(ChannelSettings):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("urls",)
    urls: list[str] = Field(min_length=1, max_length=20)

    def addresses(self) -> list[tuple[str, str]]:
        return url_hosts(self.urls)

    @field_validator("urls")
    @classmethod
    def _known_services(cls, value: list[str]) -> list[str]:
        for position, url in enumerate(value):
            if len(url) > 2048 or _plugin(url) is None:
                # The URL itself is a secret: name its position, not its text.
                raise ValueError(f"urls[{position}] is not an Apprise URL it can use")
        return value


def url_hosts(urls: list[str]) -> list[tuple[str, str]]:
    """(field, host) of every URL whose plugin names a host. A "host" that does not resolve is
    a service token (see the module's docstring); `refusal_for_target` lets it pass."""
    hosts = []
    for position, url in enumerate(urls):
        host = getattr(_plugin(url), "host", None)
        if isinstance(host, str) and host:
            hosts.append((f"urls[{position}]", host))
    return hosts


async def check_hosts(
    urls: list[str], *, allow_private: bool, allow_networks: Networks = ()
) -> None:
    """Raise EgressDeniedError if a URL's host is, or resolves to, an address the policy
    refuses."""
    for _field, host in url_hosts(urls):
        refusal = await refusal_for_target(
            host, allow_private=allow_private, allow_networks=allow_networks
        )
        if refusal is not None:
            raise EgressDeniedError(refusal)


class AppriseChannel(ChannelType):
    name = "apprise"
    settings_model = AppriseSettings

    async def send(
        self, message: Message, settings: ChannelSettings, context: SendContext
    ) -> SendResult:
        assert isinstance(settings, AppriseSettings)
        try:
            await check_hosts(
                settings.urls,
                allow_private=context.allow_private,
                allow_networks=context.allow_networks,
            )
        except EgressDeniedError as exc:
            raise ChannelError(f"refused destination: {exc}", permanent=True) from exc
        client = apprise.Apprise()
        for url in settings.urls:
            client.add(url)
        result = await client.async_notify(
            body=message.text,
            title=message.title,
            notify_type=_NOTIFY_TYPES.get(message.kind, apprise.NotifyType.FAILURE),
            timeout=context.timeout_seconds,
        )
        if not result:
            # Apprise's own log says which service failed; ours must not repeat the URLs.
            failed = int(getattr(result, "failed_count", 0) or 0)
            raise ChannelError(f"Apprise could not deliver to {failed or 'some'} of "
                               f"{len(settings.urls)} URLs")  # fmt: skip
        return SendResult(detail=f"sent to {len(settings.urls)} Apprise URLs")


register(AppriseChannel)
