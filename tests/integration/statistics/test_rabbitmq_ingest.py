"""Ingest through the real RabbitMQ bus: events published by another service reach the
Statistics consumer in batches, land once, and a republished copy changes nothing."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx

from pingtower.common.runtime import build_app
from pingtower.common.security import SingleWorkspaceAuthenticator
from pingtower.common.settings import Settings
from pingtower.statistics.service import StatisticsService
from tests.integration.common.broker import Broker
from tests.integration.statistics.conftest import TENANT, Clock
from tests.integration.statistics.story import NOV10, SHOP, H, everything


async def test_events_published_on_rabbitmq_are_ingested_once(
    pg_url: str, rabbitmq_url: str, namespace: str, tmp_path: object
) -> None:
    broker = Broker(rabbitmq_url, namespace)
    consumer_bus, pinger_bus = broker.bus(), broker.bus()
    clock = Clock(datetime(2026, 11, 10, 12, tzinfo=UTC))
    service = StatisticsService(
        Settings(statistics_database_url=pg_url, data_dir=tmp_path), consumer_bus, clock=clock
    )
    app = build_app("statistics", [service], consumer_bus, SingleWorkspaceAuthenticator(TENANT))
    day = {"from": NOV10.isoformat(), "to": (NOV10 + 24 * H).isoformat()}
    try:
        await service.prepare()
        await consumer_bus.start()
        await pinger_bus.start()
        await service.start()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://stats"
        ) as client:

            async def shop_checks() -> int:
                response = await client.get(f"/api/v1/stats/monitors/{SHOP}/uptime", params=day)
                return int(response.json()["checks"]) if response.status_code == 200 else -1

            envelopes = everything()
            await pinger_bus.publish(envelopes)
            deadline = time.monotonic() + 20
            while await shop_checks() < 60 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert await shop_checks() == 60

            await pinger_bus.publish(envelopes)  # the same messages again: the inbox drops them
            await asyncio.sleep(1.0)  # give the consumer time to (not) count them twice
            assert await broker.ready_count(consumer_bus.queue_name("statistics.ingest")) == 0
            assert await shop_checks() == 60
            response = await client.get(f"/api/v1/stats/monitors/{SHOP}/uptime", params=day)
            assert response.json()["successful_checks"] == 58
    finally:
        await service.stop()
        await broker.clean_up()  # closes both buses, deletes their queues and exchanges
