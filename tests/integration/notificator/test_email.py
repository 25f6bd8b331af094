"""Email through a real SMTP server on loopback: plain with login, and STARTTLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pingtower.common.events import Status
from pingtower.notificator.channels import REGISTRY, ChannelError, Message, SendContext
from pingtower.notificator.channels.email import EmailSettings

from .conftest import (
    SECRET,
    MakeReceiver,
    Start,
    eventually,
    monitor_created,
    monitor_id_of,
    status_changed,
)
from .smtp import PASSWORD, USER, Mailbox, self_signed_context, start_smtp

CONTEXT = SendContext(delivery_id="d1", allow_private=True, timeout_seconds=5)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = start_smtp(box)
    yield box, controller.port
    controller.stop()


def settings(port: int, **overrides: object) -> EmailSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "plain",
        "username": USER,
        "password": PASSWORD,
        "from_address": "pingtower@example.com",
        "to": ["oncall@example.com", "ops@example.com"],
    }
    values.update(overrides)
    return EmailSettings.model_validate(values)


async def test_an_email_has_a_subject_a_text_and_an_html_body(
    mailbox: tuple[Mailbox, int],
) -> None:
    box, port = mailbox
    message = Message("down", "DOWN: shop <prod>", "shop is DOWN\nError: refused")
    await REGISTRY["email"].send(message, settings(port), CONTEXT)
    [email] = box.messages
    assert email["Subject"] == "DOWN: shop <prod>"
    assert box.recipients == [["oncall@example.com", "ops@example.com"]]
    parts = {part.get_content_type(): part.get_payload(decode=True) for part in email.walk()}
    assert b"Error: refused" in parts["text/plain"]
    assert b"DOWN: shop &lt;prod&gt;" in parts["text/html"]


async def test_a_wrong_password_is_a_permanent_failure(mailbox: tuple[Mailbox, int]) -> None:
    _, port = mailbox
    with pytest.raises(ChannelError) as caught:
        await REGISTRY["email"].send(
            Message("test", "t", "x"), settings(port, password="wrong-password"), CONTEXT
        )
    assert caught.value.permanent


async def test_an_unreachable_server_is_retried_later() -> None:
    from tests.e2e.harness import free_port

    with pytest.raises(ChannelError) as caught:
        await REGISTRY["email"].send(Message("test", "t", "x"), settings(free_port()), CONTEXT)
    assert not caught.value.permanent


async def test_starttls_with_login(tmp_path: Path) -> None:
    box = Mailbox()
    controller = start_smtp(box, tls=self_signed_context(tmp_path))
    try:
        await REGISTRY["email"].send(
            Message("test", "t", "x"),
            settings(controller.port, security="starttls", verify_certificate=False),
            CONTEXT,
        )
    finally:
        controller.stop()
    assert len(box.messages) == 1


async def test_starttls_refuses_an_unverified_certificate(tmp_path: Path) -> None:
    controller = start_smtp(Mailbox(), tls=self_signed_context(tmp_path))
    try:
        with pytest.raises(ChannelError):
            await REGISTRY["email"].send(
                Message("test", "t", "x"), settings(controller.port, security="starttls"), CONTEXT
            )
    finally:
        controller.stop()


async def test_a_down_reaches_both_email_and_webhook(
    database_url: str,
    start_notificator: Start,
    make_receiver: MakeReceiver,
    mailbox: tuple[Mailbox, int],
) -> None:
    box, port = mailbox
    receiver = await make_receiver()
    running = await start_notificator(database_url)
    client = running.client
    email_settings = settings(port).model_dump()
    email = await client.post(
        "/api/v1/channels", json={"name": "mail", "type": "email", "settings": email_settings}
    )
    assert email.status_code == 201, email.text
    assert email.json()["settings"]["password"] == "set"
    hook = await client.post(
        "/api/v1/channels",
        json={
            "name": "hook",
            "type": "webhook",
            "settings": {"url": receiver.url, "secret": SECRET},
        },
    )
    rule = await client.post(
        "/api/v1/rules",
        json={
            "name": "page",
            "events": ["down"],
            "channel_ids": [email.json()["id"], hook.json()["id"]],
        },
    )
    assert rule.status_code == 201, rule.text
    created = monitor_created()
    await running.publish(created, status_changed(monitor_id_of(created), Status.UP, Status.DOWN))

    await eventually(lambda: len(box.messages) == 1 and len(receiver.accepted) == 1)
    assert box.messages[0]["Subject"] == f"DOWN: {created.payload['name']}"
