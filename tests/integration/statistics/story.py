"""The story both Statistics test modules tell, as events, and helpers to feed and query.

Monitor "shop" (workspace acme) was up from 9 Nov 00:00, down 06:00–07:00 (incident 1), up, in
maintenance 10:00–12:00, up, down 10 Nov 03:00–03:30 (incident 2), up since. Sixty checks ran
10 Nov 08:00–08:59 with latencies 1..60 ms, the ones at minutes 10 and 20 failing. "db" went
down at 10 Nov 11:00; "shop" is public, "db" is not; "gone" was deleted; "theirs" belongs to
workspace globex.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from pingtower.common.events import (
    CheckCompleted,
    Contract,
    Envelope,
    IncidentOpened,
    IncidentResolved,
    MonitorCreated,
    MonitorDeleted,
    MonitorStatusChanged,
    Outcome,
    SloBurnRateExceeded,
    Status,
)
from pingtower.common.messaging.bus import BatchHandler
from tests.integration.statistics.conftest import TENANT, Harness

SHOP = uuid.UUID("00000000-0000-4000-8000-000000000001")
DB = uuid.UUID("00000000-0000-4000-8000-000000000002")
GONE = uuid.UUID("00000000-0000-4000-8000-000000000003")
FOREIGN = uuid.UUID("00000000-0000-4000-8000-000000000004")
INCIDENT_1 = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
INCIDENT_2 = uuid.UUID("00000000-0000-4000-8000-0000000000a2")
H = timedelta(hours=1)
M = timedelta(minutes=1)
NOV9 = datetime(2026, 11, 9, tzinfo=UTC)
NOV10 = datetime(2026, 11, 10, tzinfo=UTC)


def wrap(event: Contract, tenant: str = TENANT, at: datetime | None = None) -> Envelope:
    return Envelope.wrap(event, producer="pinger", tenant=tenant, occurred_at=at or NOV9)


def created(
    monitor_id: uuid.UUID, name: str, tags: list[str] | None = None, *, public: bool = False
) -> MonitorCreated:
    return MonitorCreated(
        monitor_id=monitor_id,
        name=name,
        type="http",
        target="https://example.com",
        tags=tags or [],
        interval_seconds=60,
        public=public,
    )


def change(monitor_id: uuid.UUID, at: datetime, previous: Status, current: Status) -> Envelope:
    return wrap(
        MonitorStatusChanged(
            monitor_id=monitor_id, previous=previous, current=current, changed_at=at
        )
    )


def shop_timeline() -> list[Envelope]:
    points = [
        (NOV9, Status.UP),
        (NOV9 + 6 * H, Status.DOWN),
        (NOV9 + 7 * H, Status.UP),
        (NOV9 + 10 * H, Status.MAINTENANCE),
        (NOV9 + 12 * H, Status.UP),
        (NOV10 + 3 * H, Status.DOWN),
        (NOV10 + 3.5 * H, Status.UP),
    ]
    previous = Status.UNKNOWN
    envelopes = []
    for at, status in points:
        envelopes.append(change(SHOP, at, previous, status))
        previous = status
    return envelopes


def shop_incidents() -> list[Envelope]:
    return [
        wrap(
            IncidentOpened(
                incident_id=INCIDENT_1,
                monitor_id=SHOP,
                started_at=NOV9 + 6 * H,
                cause="timeout",
                region="eu",
            )
        ),
        wrap(
            IncidentResolved(
                incident_id=INCIDENT_1,
                monitor_id=SHOP,
                started_at=NOV9 + 6 * H,
                resolved_at=NOV9 + 7 * H,
            )
        ),
        wrap(
            IncidentOpened(
                incident_id=INCIDENT_2,
                monitor_id=SHOP,
                started_at=NOV10 + 3 * H,
                cause="http_status",
            )
        ),
        wrap(
            IncidentResolved(
                incident_id=INCIDENT_2,
                monitor_id=SHOP,
                started_at=NOV10 + 3 * H,
                resolved_at=NOV10 + 3.5 * H,
            )
        ),
    ]


def check(minute: int, latency: float, *, monitor_id: uuid.UUID = SHOP) -> CheckCompleted:
    finished = NOV10 + 8 * H + minute * M + timedelta(seconds=1)
    failing = minute in (10, 20)
    return CheckCompleted(
        check_id=uuid.uuid5(monitor_id, str(minute)),
        monitor_id=monitor_id,
        region="eu" if minute % 2 else "us",
        scheduled_at=finished - timedelta(seconds=2),
        started_at=finished - timedelta(seconds=1),
        finished_at=finished,
        outcome=Outcome.DOWN if failing else Outcome.UP,
        latency_ms=latency,
        error_kind="timeout" if failing else None,
        phases_ms={"dns": 2.0, "connect": 4.0},
    )


def shop_checks() -> list[Envelope]:
    return [wrap(check(minute, float(minute + 1))) for minute in range(60)]


def everything() -> list[Envelope]:
    return [
        wrap(created(SHOP, "shop", ["web"], public=True)),
        wrap(created(DB, "db", ["db"])),
        change(DB, NOV10 + 11 * H, Status.UP, Status.DOWN),
        wrap(created(GONE, "gone")),
        wrap(MonitorDeleted(monitor_id=GONE), at=NOV9 + H),
        wrap(created(FOREIGN, "theirs"), tenant="globex"),
        *shop_timeline(),
        *shop_incidents(),
        *shop_checks(),
    ]


async def feed(stats: Harness, envelopes: list[Envelope], batch: int = 500) -> None:
    await feed_handler(stats.service.handler, envelopes, batch)


async def feed_handler(handler: BatchHandler, envelopes: list[Envelope], batch: int = 500) -> None:
    """Give the envelopes to the consumer's handler in batches, as the bus would."""
    for i in range(0, len(envelopes), batch):
        await handler(envelopes[i : i + batch])


async def get(stats: Harness, path: str, **params: Any) -> Any:
    response = await stats.client.get(f"/api/v1/stats{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def count(stats: Harness, table: Any) -> int:
    async with stats.service.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


def capture_slo_events(stats: Harness, name: str) -> list[Envelope]:
    """The `slo.*` events the service publishes, gathered as they come."""
    received: list[Envelope] = []

    async def capture(batch: Sequence[Envelope]) -> None:
        received.extend(batch)

    stats.bus.subscribe(name, ["slo.#"], capture)
    return received


async def the_one_burn_event(received: list[Envelope]) -> SloBurnRateExceeded:
    """The single burn-rate event gathered, once the outbox relay has published it."""
    for _ in range(100):  # bounded: the relay polls every 50 ms
        if received:
            break
        await asyncio.sleep(0.05)
    (envelope,) = received
    assert envelope.tenant == TENANT
    event = envelope.parse()
    assert isinstance(event, SloBurnRateExceeded)
    return event
