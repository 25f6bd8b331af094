"""The web role builds one WebUi; a process without the role gets none."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pingtower.common.events import Envelope, MonitorStatusChanged, Status
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.web.component import WebUi
from pingtower.web.service import build


def test_the_web_role_builds_the_dashboard_component() -> None:
    [component] = build(Settings(), InProcessBus(), ["web"])
    assert isinstance(component, WebUi)
    assert [router.prefix for router in component.routers] == ["/events", "/web"]


def test_other_roles_get_no_dashboard() -> None:
    assert build(Settings(), InProcessBus(), ["pinger-api"]) == []


async def test_a_malformed_event_is_skipped_and_the_next_one_still_reaches_the_dashboards() -> None:
    web = WebUi(InProcessBus())
    subscription = web.fanout.subscribe("acme")
    good = MonitorStatusChanged(
        monitor_id=uuid.uuid4(),
        previous=Status.UP,
        current=Status.DOWN,
        changed_at=datetime.now(UTC),
    )

    await web.on_events(
        [
            Envelope(type="monitor.status_changed", producer="pinger", tenant="acme", payload={}),
            Envelope(type="no.such.event", producer="pinger", tenant="acme", payload={}),
            Envelope.wrap(good, producer="pinger", tenant="acme"),
        ]
    )

    result = await subscription.next(1)
    assert result is not None
    [event], dropped = result
    assert (event.type, dropped) == ("monitor.status_changed", 0)
    assert str(good.monitor_id) in event.data
