"""Quiet hours: a daily window, in a time zone, during which a channel's messages wait.

A window may cross midnight (22:00-07:00). A message due inside the window is held until the
window ends, in local time, on the right day; daylight-saving changes are handled by computing
the end in local time and converting back to UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    timezone: str

    def hold_until(self, at: datetime) -> datetime | None:
        """When a message due `at` (aware) may go; None if `at` is outside the window."""
        if self.start == self.end:
            return None  # an empty window
        zone = ZoneInfo(self.timezone)
        local = at.astimezone(zone)
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            inside = self.start <= now < self.end
            end_day = local.date()
        else:  # crosses midnight
            inside = now >= self.start or now < self.end
            end_day = local.date() + timedelta(days=1) if now >= self.start else local.date()
        if not inside:
            return None
        return datetime.combine(end_day, self.end, tzinfo=zone).astimezone(UTC)
