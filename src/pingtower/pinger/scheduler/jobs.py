"""Building the check job a probe receives: the whole check specification plus its deadline."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pingtower.common.events import CheckJob, Envelope

PRODUCER = "pinger.scheduler"


def job_envelope(
    *,
    monitor_id: uuid.UUID,
    tenant: str,
    check_type: str,
    target: str,
    settings: dict[str, Any],
    timeout_seconds: float,
    region: str,
    scheduled_at: datetime,
    interval_seconds: float,
) -> Envelope:
    job = CheckJob(
        monitor_id=monitor_id,
        check_type=check_type,
        target=target,
        settings=settings,
        timeout_seconds=timeout_seconds,
        scheduled_at=scheduled_at,
        deadline=scheduled_at + timedelta(seconds=interval_seconds),
        region=region,
    )
    return Envelope.wrap(job, producer=PRODUCER, tenant=tenant, occurred_at=scheduled_at)
