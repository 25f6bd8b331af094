"""Response documents of the Statistics API (it takes no request bodies)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pingtower.common.events import Status
from pingtower.statistics.api.status_page import PublicDay


class OverviewItem(BaseModel):
    monitor_id: uuid.UUID
    name: str
    type: str
    tags: list[str]
    public: bool
    status: Status
    since: datetime | None
    uptime_24h: float | None
    uptime_30d: float | None
    p95_24h_ms: float | None
    last_check_at: datetime | None
    last_latency_ms: float | None


class Overview(BaseModel):
    generated_at: datetime
    items: list[OverviewItem]
    total: int = Field(description="Monitors matching the filters, over all pages")
    offset: int
    limit: int | None = Field(description="The page size asked for; null: all monitors")
    next_offset: int | None = Field(description="offset of the next page; null on the last")


class Uptime(BaseModel):
    monitor_id: uuid.UUID
    start: datetime
    end: datetime
    uptime: float | None
    """Up time over counted time; null when the window holds no counted time."""
    up_seconds: float
    downtime_seconds: float
    excluded_seconds: float
    """Maintenance, paused and unknown time: left out of the figure."""
    checks: int
    successful_checks: int
    check_success_ratio: float | None
    incident_count: int
    mttr_seconds: float | None
    mtbf_seconds: float | None


class Incident(BaseModel):
    incident_id: uuid.UUID
    monitor_id: uuid.UUID
    started_at: datetime
    resolved_at: datetime | None
    ongoing: bool
    duration_seconds: float
    cause: str | None
    first_error: str | None
    region: str | None


class IncidentPage(BaseModel):
    items: list[Incident]
    next_cursor: str | None


class Point(BaseModel):
    at: datetime
    checks: int
    up: int
    degraded: int
    down: int
    success_ratio: float | None
    min_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    phases_ms: dict[str, float]


class Timeseries(BaseModel):
    monitor_id: uuid.UUID
    start: datetime
    end: datetime
    step_seconds: int
    resolution: str
    relative_error: float
    """Bound on the relative error of every percentile (from the histogram's buckets)."""
    points: list[Point]


class DailyUptime(BaseModel):
    monitor_id: uuid.UUID
    start: datetime
    end: datetime
    uptime: float | None = Field(description="Over all the days")
    days: list[PublicDay] = Field(description="UTC days, oldest first; today's ends now")


class SloCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    monitor_id: uuid.UUID | None = None
    tag: str | None = Field(None, min_length=1, max_length=100)
    objective: float = Field(gt=0, lt=1, description="0.999 for 99.9%")
    window_days: int = Field(30, ge=1, le=365)

    @model_validator(mode="after")
    def _one_target(self) -> SloCreate:
        if (self.monitor_id is None) == (self.tag is None):
            raise ValueError("give exactly one of monitor_id or tag")
        return self


class SloUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    objective: float | None = Field(None, gt=0, lt=1)
    window_days: int | None = Field(None, ge=1, le=365)


class Slo(BaseModel):
    slo_id: uuid.UUID
    name: str
    monitor_id: uuid.UUID | None
    tag: str | None
    objective: float
    window_days: int
    created_at: datetime
    uptime: float | None
    error_budget_consumed: float
    error_budget_remaining: float
    burn_rates: dict[str, float]
    """Burn rate per window ending now (5m, 30m, 1h, 6h); 1.0 spends the budget exactly."""
    alerting_since: datetime | None


class SloPage(BaseModel):
    items: list[Slo]
    next_cursor: str | None


class TrendFigure(BaseModel):
    current: float | None
    previous: float | None
    change: float | None
    relative_change: float | None


class Trends(BaseModel):
    monitor_id: uuid.UUID
    start: datetime
    end: datetime
    previous_start: datetime
    uptime: TrendFigure
    incident_count: TrendFigure
    mttr_seconds: TrendFigure
    p95_ms: TrendFigure
    daily_p95_ms: list[float | None]
    """p95 of each of the last days, oldest first (the basis of latency_growing)."""
    latency_growing: bool


class SlaRow(BaseModel):
    kind: str
    """"monitor" or "tag"."""
    key: str
    """The monitor id, or the tag."""
    name: str
    monitors: int
    uptime: float | None
    up_seconds: float
    downtime_seconds: float
    excluded_seconds: float
    checks: int
    check_success_ratio: float | None
    incident_count: int
    mttr_seconds: float | None
    p95_ms: float | None


class SlaReport(BaseModel):
    start: datetime
    end: datetime
    rows: list[SlaRow]
