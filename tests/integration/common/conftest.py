from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.common.broker import Broker


@pytest.fixture
async def broker(rabbitmq_url: str, namespace: str) -> AsyncIterator[Broker]:
    """Buses in the test's own namespace; everything they declared is deleted afterwards."""
    broker = Broker(rabbitmq_url, namespace)
    yield broker
    await broker.clean_up()
