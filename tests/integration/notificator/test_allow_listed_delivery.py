"""Deliveries follow the egress allow-list like saving and test-sending do: with private
addresses refused, a webhook inside an allow-listed network still receives its messages."""

from __future__ import annotations

import ipaddress

from .conftest import (
    MakeReceiver,
    Start,
    eventually,
    eventually_async,
    setup_webhook_rule,
)


async def test_a_down_reaches_a_webhook_in_an_allow_listed_private_network(
    database_url: str, start_notificator: Start, make_receiver: MakeReceiver
) -> None:
    receiver = await make_receiver()  # on 127.0.0.1: loopback, refused unless allow-listed
    running = await start_notificator(
        database_url,
        allow_private_targets=False,
        egress_allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),
    )
    await setup_webhook_rule(running.client, receiver.url)
    await running.new_monitor_goes_down()

    await eventually(lambda: len(receiver.accepted) == 1)
    assert receiver.accepted[0]["kind"] == "down"

    async def recorded() -> bool:  # the worker records the send after the receiver answered
        log = (await running.client.get("/api/v1/notifications")).json()["items"]
        return [item["status"] for item in log] == ["delivered"]

    await eventually_async(recorded)
