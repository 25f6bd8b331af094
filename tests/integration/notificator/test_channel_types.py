"""Each channel type against a local server that speaks the documented API."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from pingtower.notificator.channels import REGISTRY, ChannelError, Message, SendContext

CONTEXT = SendContext(delivery_id="d1", allow_private=True, timeout_seconds=5)
MESSAGE = Message("down", "DOWN: shop", "shop is DOWN since 03:00\nError: refused")
TOKEN = "123456:ABC-secret_token"
SID = "AC" + "0" * 32


@dataclass
class FakeApi:
    """Records every request; answers `status` with `answer`."""

    status: int = 200
    answer: dict[str, Any] = field(default_factory=lambda: {"ok": True})
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "json": json.loads(body) if request.content_type == "application/json" else None,
                "form": dict(await request.post())
                if request.content_type.endswith("urlencoded")
                else None,
            }
        )
        return web.json_response(self.answer, status=self.status)


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    fake = FakeApi()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


async def send(kind: str, settings: dict[str, Any], message: Message = MESSAGE) -> None:
    channel = REGISTRY[kind]
    await channel.send(message, channel.settings_model.model_validate(settings), CONTEXT)


async def test_slack_gets_a_bold_title_and_the_text(api: FakeApi) -> None:
    await send("slack", {"webhook_url": f"{api.url}/services/T/B/X", "username": "PingTower"})
    [request] = api.requests
    assert request["path"] == "/services/T/B/X"
    assert request["json"] == {
        "text": "*DOWN: shop*\nshop is DOWN since 03:00\nError: refused",
        "username": "PingTower",
    }


async def test_discord_content_is_cut_to_its_limit(api: FakeApi) -> None:
    await send(
        "discord", {"webhook_url": f"{api.url}/api/webhooks/1/x"}, Message("down", "t", "x" * 3000)
    )
    content = api.requests[0]["json"]["content"]
    assert len(content) == 2000
    assert content.startswith("**t**\nxxx")


async def test_teams_gets_a_message_card(api: FakeApi) -> None:
    await send("teams", {"webhook_url": f"{api.url}/webhookb2/x"})
    card = api.requests[0]["json"]
    assert card["@type"] == "MessageCard"
    assert card["title"] == "DOWN: shop"
    assert card["text"] == "shop is DOWN since 03:00  \nError: refused"


async def test_telegram_calls_send_message_for_the_chat(api: FakeApi) -> None:
    await send("telegram", {"bot_token": TOKEN, "chat_id": "-100123", "api_base_url": api.url})
    [request] = api.requests
    assert request["path"] == f"/bot{TOKEN}/sendMessage"
    assert request["json"]["chat_id"] == "-100123"
    assert request["json"]["text"].startswith("DOWN: shop\n\nshop is DOWN")


async def test_a_telegram_refusal_is_permanent_and_never_shows_the_token(api: FakeApi) -> None:
    api.status, api.answer = 400, {"ok": False, "description": f"chat not found for {TOKEN}"}
    with pytest.raises(ChannelError) as caught:
        await send("telegram", {"bot_token": TOKEN, "chat_id": "-100123", "api_base_url": api.url})
    assert caught.value.permanent
    assert TOKEN not in str(caught.value)


async def test_twilio_gets_one_form_post_per_recipient_with_basic_auth(api: FakeApi) -> None:
    api.status, api.answer = 201, {"sid": "SM1"}
    await send(
        "sms",
        {
            "account_sid": SID,
            "auth_token": "twilio-auth-token-1234",
            "from_number": "+15005550006",
            "to_numbers": ["+491701234567", "+15551234567"],
            "api_base_url": api.url,
        },
    )
    assert [r["path"] for r in api.requests] == [f"/2010-04-01/Accounts/{SID}/Messages.json"] * 2
    assert [r["form"]["To"] for r in api.requests] == ["+491701234567", "+15551234567"]
    assert api.requests[0]["form"]["Body"].startswith("DOWN: shop\n")
    credentials = base64.b64encode(f"{SID}:twilio-auth-token-1234".encode()).decode()
    assert api.requests[0]["headers"]["Authorization"] == f"Basic {credentials}"


async def test_a_rate_limited_chat_webhook_is_retried(api: FakeApi) -> None:
    api.status = 429
    with pytest.raises(ChannelError) as caught:
        await send("slack", {"webhook_url": f"{api.url}/services/T/B/X"})
    assert not caught.value.permanent
    assert caught.value.status_code == 429


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("telegram", {"bot_token": "not a token", "chat_id": "1"}),
        ("telegram", {"bot_token": TOKEN, "chat_id": "nobody"}),
        (
            "sms",
            {
                "account_sid": "AC1",
                "auth_token": "x" * 16,
                "from_number": "+1555",
                "to_numbers": ["+15551234567"],
            },
        ),
        (
            "sms",
            {
                "account_sid": SID,
                "auth_token": "x" * 16,
                "from_number": "+15551234567",
                "to_numbers": ["0170 123"],
            },
        ),
        ("slack", {"webhook_url": "javascript:alert(1)"}),
    ],
)
def test_bad_channel_settings_are_refused(kind: str, settings: dict[str, Any]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        REGISTRY[kind].settings_model.model_validate(settings)


def test_every_secret_field_is_declared_by_its_channel_type() -> None:
    secrets = {name: set(t.settings_model.SECRET_FIELDS) for name, t in REGISTRY.items()}
    assert secrets == {
        "webhook": {"secret", "headers"},
        "email": {"password"},
        "slack": {"webhook_url"},
        "discord": {"webhook_url"},
        "teams": {"webhook_url"},
        "telegram": {"bot_token"},
        "sms": {"auth_token"},
        "apprise": {"urls"},
    }


async def test_apprise_posts_through_its_json_scheme_to_a_local_server(api: FakeApi) -> None:
    host_port = api.url.removeprefix("http://")
    settings = REGISTRY["apprise"].settings_model.model_validate(
        {"urls": [f"json://{host_port}/notify"]}
    )
    result = await REGISTRY["apprise"].send(MESSAGE, settings, CONTEXT)
    assert "1 Apprise URL" in result.detail
    [request] = api.requests
    assert request["path"] == "/notify"
    assert request["json"]["title"] == "DOWN: shop"
    assert request["json"]["message"] == MESSAGE.text
    assert request["json"]["type"] == "failure"


async def test_apprise_refuses_a_private_host_before_sending_anything(api: FakeApi) -> None:
    host_port = api.url.removeprefix("http://")
    settings = REGISTRY["apprise"].settings_model.model_validate(
        {"urls": [f"json://{host_port}/notify"]}
    )
    public_only = SendContext(delivery_id="d1", allow_private=False, timeout_seconds=5)
    with pytest.raises(ChannelError, match="refused destination") as refused:
        await REGISTRY["apprise"].send(MESSAGE, settings, public_only)
    assert refused.value.permanent
    assert api.requests == []


async def test_apprise_reports_a_failing_service_as_a_retryable_error(api: FakeApi) -> None:
    api.status = 503
    host_port = api.url.removeprefix("http://")
    settings = REGISTRY["apprise"].settings_model.model_validate(
        {"urls": [f"json://{host_port}/notify"]}
    )
    with pytest.raises(ChannelError, match="could not deliver to 1 of 1") as failed:
        await REGISTRY["apprise"].send(MESSAGE, settings, CONTEXT)
    assert not failed.value.permanent


async def test_a_webhook_body_template_shapes_the_request(api: FakeApi) -> None:
    template = '{"summary": {{ title | tojson }}, "service": {{ monitor.name | tojson }}}'
    message = Message("down", "DOWN: shop", "text", {"monitor": {"name": 'shop "eu"'}})
    await send("webhook", {"url": f"{api.url}/hook", "body_template": template}, message)
    assert api.requests[0]["json"] == {"summary": "DOWN: shop", "service": 'shop "eu"'}
