"""Report windows: named rolling windows, calendar months and custom ranges, and steps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

ROLLING = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "365d": timedelta(days=365),
}
_STEP = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")


class WindowError(ValueError):
    """A window that cannot be used; `field` names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def month_range(month: str) -> tuple[datetime, datetime]:
    """'2026-10' -> [2026-10-01T00:00Z, 2026-11-01T00:00Z)."""
    match = _MONTH.match(month)
    if match is None:
        raise WindowError("month", "must look like 2026-10")
    year, number = int(match[1]), int(match[2])
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def resolve(
    now: datetime,
    *,
    window: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    month: str | None = None,
    default: str = "24h",
) -> tuple[datetime, datetime]:
    """The [start, end) a request asks for: a rolling window ending now, a calendar month, or
    from/to (to defaults to now). Exactly one way may be used; the end never passes now, since
    the future has no status yet."""
    ways = sum(x is not None for x in (window, month)) + (start is not None)
    if ways > 1:
        raise WindowError("window", "give only one of window, month or from/to")
    if end is not None and start is None:
        raise WindowError("from", "to needs from")
    if start is not None:
        lo, hi = start, end or now
    elif month is not None:
        lo, hi = month_range(month)
    else:
        name = window or default
        if name not in ROLLING:
            raise WindowError("window", f"must be one of {', '.join(ROLLING)}")
        lo, hi = now - ROLLING[name], now
    hi = min(hi, now)
    if lo >= hi:
        raise WindowError("from", "the window must start before it ends, and before now")
    return lo, hi


def parse_step(text: str) -> timedelta:
    """'5m', '1h', '1d': a whole number of minutes, hours or days."""
    match = _STEP.match(text)
    if match is None:
        raise WindowError("step", "must be a number followed by m, h or d, e.g. 5m")
    return int(match[1]) * _UNITS[match[2]]
