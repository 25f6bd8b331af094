"""Maintenance windows: when a monitor's failures are expected and must not open incidents.

A window is one-off (a start and an end), weekly (days of the week, a local start time and a
duration, in a time zone) or cron (a cron expression for its starts and a duration, in a time
zone). Weekly and cron times are wall-clock times in their zone, so a window at 02:00 stays at
02:00 across daylight-saving changes; durations are elapsed time, so a two-hour window lasts two
hours even on the night the clocks change.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from pingtower.pinger.domain.monitor import InvalidSettingError

MAX_DURATION = timedelta(days=7)


@dataclass(frozen=True)
class OneOff:
    starts_at: datetime
    ends_at: datetime

    def __post_init__(self) -> None:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise InvalidSettingError("starts_at", "needs a time zone offset")
        if self.ends_at <= self.starts_at:
            raise InvalidSettingError("ends_at", "must be after starts_at")

    def is_active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True)
class Weekly:
    days: frozenset[int]  # 0 = Monday ... 6 = Sunday
    start: time
    duration: timedelta
    timezone: str

    def __post_init__(self) -> None:
        if not self.days or not self.days <= set(range(7)):
            raise InvalidSettingError("days", "give days of the week as 0 (Monday) to 6 (Sunday)")
        if not timedelta(0) < self.duration <= MAX_DURATION:
            raise InvalidSettingError("duration_minutes", "must be positive and at most 7 days")
        zone(self.timezone)

    def is_active(self, at: datetime) -> bool:
        tz = zone(self.timezone)
        local_day = at.astimezone(tz).date()
        # A window that began on one of the previous days may still be running.
        for back in range(self.duration.days + 2):
            day = local_day - timedelta(days=back)
            if day.weekday() not in self.days:
                continue
            starts = datetime.combine(day, self.start, tzinfo=tz).astimezone(UTC)
            if starts <= at < starts + self.duration:
                return True
        return False


@dataclass(frozen=True)
class Cron:
    """Starts whenever `expression` fires in `timezone` and lasts `duration`.

    Daylight-saving changes follow cron (cronsim, like Debian's cron): a start that falls in the
    hour the clocks skip happens at the jump, and a fixed start in the hour that repeats happens
    once, at its first occurrence.
    """

    expression: str
    duration: timedelta
    timezone: str

    def __post_init__(self) -> None:
        if not timedelta(0) < self.duration <= MAX_DURATION:
            raise InvalidSettingError("duration_minutes", "must be positive and at most 7 days")
        tz = zone(self.timezone)
        try:
            next(CronSim(self.expression, datetime(2026, 1, 1, tzinfo=tz)))
        except (CronSimError, StopIteration) as exc:
            raise InvalidSettingError("cron", f"not a valid cron expression: {exc}") from None

    def is_active(self, at: datetime) -> bool:
        # The window covering `at` is the one that started in (at - duration, at]; CronSim yields
        # starts strictly after its origin, so the first start after that origin decides. The
        # origin is computed in UTC: arithmetic on zoned datetimes would be wall-clock arithmetic.
        origin = (at.astimezone(UTC) - self.duration).astimezone(zone(self.timezone))
        # Compared as instants: datetimes in one zone compare by wall clock. CronSim works in
        # wall-clock time, so from an origin in the second pass of a repeated hour it may yield
        # the first pass's start, an instant before the origin: skip such starts.
        runs = CronSim(self.expression, origin)
        for start in itertools.islice(runs, 4):
            if start.timestamp() > origin.timestamp():
                return start.timestamp() <= at.timestamp()
        return False


Window = OneOff | Weekly | Cron


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSettingError("timezone", f"unknown time zone {name!r}") from None


def in_maintenance(windows: list[Window], at: datetime) -> bool:
    return any(window.is_active(at) for window in windows)
