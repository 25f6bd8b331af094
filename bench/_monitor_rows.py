"""Rows of the Pinger's monitors table for the benchmarks that write their monitors straight
into the database (thousands of them, without the API's cost per monitor)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def http_monitor_row(
    monitor_id: uuid.UUID,
    index: int,
    *,
    target: str,
    interval: int,
    retry_interval: int,
    stamp: datetime,
    settings: dict[str, Any] | None = None,
    tags: Sequence[str] = (),
    timeout_seconds: float = 5.0,
) -> dict[str, Any]:
    """An active HTTP monitor of the "bench" workspace, created and updated at `stamp`."""
    return {
        "id": monitor_id,
        "tenant": "bench",
        "name": f"bench-{index}",
        "type": "http",
        "target": target,
        "settings": settings or {},
        "tags": list(tags),
        "interval_seconds": interval,
        "cron": None,
        "timezone": "UTC",
        "timeout_seconds": timeout_seconds,
        "regions": ["default"],
        "failures_before_down": 2,
        "successes_before_up": 1,
        "retry_interval_seconds": retry_interval,
        "parent_id": None,
        "paused": False,
        "created_at": stamp,
        "updated_at": stamp,
    }
