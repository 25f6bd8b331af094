"""The HTTP request every HTTP-based channel makes, with one way of classifying failures."""

from __future__ import annotations

import aiohttp

from pingtower.common.egress import EgressDeniedError
from pingtower.notificator.channels.base import ChannelError, SendContext, SendResult

# Answers worth retrying; any other 4xx means the request itself is wrong and will stay wrong.
RETRYABLE_4XX = frozenset({408, 425, 429})


async def send_http(
    context: SendContext,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    redact: tuple[str, ...] = (),
) -> tuple[SendResult, bytes]:
    """Send through the guarded client; raise ChannelError on any failure.

    `redact`: secrets that may appear in the URL (bot tokens) and so in error texts.
    """

    def scrub(text: str) -> str:
        for secret in redact:
            if secret:
                text = text.replace(secret, "***")
        return text[:300]

    try:
        async with (
            context.http() as http,
            http.request(
                method, url, data=body if body is not None else data, headers=headers
            ) as response,
        ):
            status = response.status
            payload = await response.read()
    except EgressDeniedError as exc:
        raise ChannelError(scrub(f"address refused: {exc}"), permanent=True) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ChannelError(scrub(f"{type(exc).__name__}: {exc}")) from None
    if status < 300:
        return SendResult(status_code=status), payload
    text = payload[:200].decode(errors="replace")
    permanent = 400 <= status < 500 and status not in RETRYABLE_4XX
    raise ChannelError(scrub(f"HTTP {status}: {text}"), status_code=status, permanent=permanent)
