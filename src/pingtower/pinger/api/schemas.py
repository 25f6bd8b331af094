"""Request and response bodies of the monitors API: separate create, update and public shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pingtower.common.events import Outcome, SloSetting, Status

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Region = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class MonitorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    type: str = Field("http", min_length=1, max_length=32)
    target: str = Field(
        "", max_length=2048, description="URL, host:port or name; nothing for heartbeats."
    )
    settings: dict[str, Any] = {}
    tags: list[Tag] = Field([], max_length=50)
    interval_seconds: int = Field(60, ge=1, le=86_400)
    cron: str | None = Field(
        None,
        max_length=120,
        description="Run on this cron schedule instead of every interval_seconds "
        "(which then only bounds how late a job may start).",
    )
    timezone: str = Field("UTC", max_length=64, description="Time zone of the cron schedule.")
    timeout_seconds: float | None = Field(
        None, gt=0, le=300, description="Default: 10 s, or the interval if shorter."
    )
    regions: list[Region] = Field(["default"], min_length=1, max_length=20)
    failures_before_down: int | None = Field(
        None, ge=1, le=100, description="Default: 2; 1 for heartbeats (a missed period is news)."
    )
    successes_before_up: int = Field(1, ge=1, le=100)
    retry_interval_seconds: int | None = Field(
        None, ge=1, le=86_400, description="Interval while PENDING. Default: a third of it."
    )
    failure_quorum: int | None = Field(
        None,
        ge=1,
        le=20,
        description="Regions that must fail for a check to fail. "
        "Default: a majority of the regions.",
    )
    parent_id: uuid.UUID | None = None
    paused: bool = False
    public: bool = Field(
        False, description="Shown on the workspace's public status page (admin only)."
    )
    slo: SloSetting | None = Field(
        None,
        description="A service level objective for the monitor, kept by the Statistics "
        "service (listed under /api/v1/stats/slos).",
    )


# Monitors one batch may create: the batch is one transaction, which on SQLite holds the only
# write lock (checks' results wait behind it), so its length stays bounded.
MAX_BATCH = 1000


class MonitorBatchCreate(BaseModel):
    """Monitors created together, all or none. An item's `parent_id` names a monitor that exists
    already: the ids of the batch's own monitors are set by the server, so create parents in an
    earlier request."""

    model_config = ConfigDict(extra="forbid")

    monitors: list[MonitorCreate] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} monitors."
    )


class MonitorUpdate(BaseModel):
    """Only the fields given change; `settings`, when given, replaces the settings whole."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    type: str | None = Field(None, min_length=1, max_length=32)
    target: str | None = Field(None, min_length=1, max_length=2048)
    settings: dict[str, Any] | None = None
    tags: list[Tag] | None = Field(None, max_length=50)
    interval_seconds: int | None = Field(None, ge=1, le=86_400)
    cron: str | None = Field(None, max_length=120)
    timezone: str | None = Field(None, max_length=64)
    timeout_seconds: float | None = Field(None, gt=0, le=300)
    regions: list[Region] | None = Field(None, min_length=1, max_length=20)
    failures_before_down: int | None = Field(None, ge=1, le=100)
    successes_before_up: int | None = Field(None, ge=1, le=100)
    retry_interval_seconds: int | None = Field(None, ge=1, le=86_400)
    failure_quorum: int | None = Field(None, ge=1, le=20)
    parent_id: uuid.UUID | None = None
    public: bool | None = Field(None, description="Shown on the public status page (admin only).")
    slo: SloSetting | None = Field(
        None, description="Replaces the objective whole; null removes it."
    )


class ResultPublic(BaseModel):
    check_id: uuid.UUID
    region: str
    scheduled_at: datetime
    started_at: datetime
    finished_at: datetime
    outcome: Outcome
    latency_ms: float | None
    error_kind: str | None
    error_message: str | None
    status_code: int | None
    size_bytes: int | None
    phases_ms: dict[str, float]
    cert_expires_at: datetime | None


class MonitorPublic(BaseModel):
    id: uuid.UUID
    name: str
    type: str
    target: str
    settings: dict[str, Any]
    tags: list[str]
    interval_seconds: int
    cron: str | None
    timezone: str
    timeout_seconds: float
    regions: list[str]
    failures_before_down: int
    successes_before_up: int
    retry_interval_seconds: int
    failure_quorum: int | None
    parent_id: uuid.UUID | None
    paused: bool
    public: bool
    slo: SloSetting | None
    ping_url: str | None = Field(None, description="Heartbeats: where the job pings.")
    status: Status
    status_since: datetime | None
    incident_id: uuid.UUID | None
    last_result: ResultPublic | None
    created_at: datetime
    updated_at: datetime


class MonitorBatchPublic(BaseModel):
    monitors: list[MonitorPublic] = Field(description="The created monitors, in the batch's order.")


class MonitorPage(BaseModel):
    items: list[MonitorPublic]
    next_cursor: str | None


class ResultPage(BaseModel):
    items: list[ResultPublic]
    next_cursor: str | None


class CheckQueued(BaseModel):
    job_ids: list[uuid.UUID]
    regions: list[str]
