"""Schedule maths: when a monitor runs next.

Each monitor runs on a fixed grid `offset + k * interval` (epoch seconds), where the offset is a
fraction of the interval derived from a hash of the monitor's id (its rank among the monitors
with the same interval, see `spread`). Monitors with one interval are therefore spread evenly
over it instead of firing together, and a restarted scheduler lands on the same grid: it resumes
without a burst, because nothing is "due since the restart".

A monitor may instead follow a cron expression in a time zone; it then runs exactly when the
expression says (users who write "at 03:00" mean it), not spread.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from pingtower.pinger.domain.monitor import InvalidSettingError


def offset_fraction(monitor_id: uuid.UUID) -> float:
    """A stable number in [0, 1) for the monitor, uniform over ids (a hash, not the raw uuid,
    so ids that share a prefix still spread)."""
    digest = hashlib.blake2b(monitor_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def next_run(now: float, interval: float, fraction: float) -> float:
    """The first grid point of (interval, fraction) strictly after `now`."""
    if interval <= 0:
        raise ValueError("interval must be positive")
    offset = fraction * interval
    k = math.floor((now - offset) / interval) + 1
    candidate = offset + k * interval
    # Floating point can land a hair at or before `now`; step once more.
    if candidate <= now:
        candidate += interval
    return candidate


def deadline(scheduled_at: float, interval: float) -> float:
    """A job not started by the time the next one is due is worthless: drop it then."""
    return scheduled_at + interval


def spread(
    monitor_ids: Iterable[uuid.UUID],
    phase: float = 0.0,
    *,
    fraction: Callable[[uuid.UUID], float] = offset_fraction,
) -> dict[uuid.UUID, float]:
    """Grid fractions for the monitors that share one interval: evenly spaced, in the order of
    their hashes, rotated by `phase`. `fraction` is `offset_fraction` or a cache of it (the
    scheduler keeps each monitor's: hashing every member again per change of a group of 50,000
    cost more than the rest of the respread).

    Independent hashes alone would crowd some seconds (balls into bins: the fullest second gets
    several times the square root of the average more); ranking them gives every second at
    most ceil(K / interval) + 1 of K monitors. The same set always gets the same fractions, so
    a restart resumes the same grid, and adding or removing one monitor moves each other
    monitor by at most one slot.
    """
    ordered = sorted(monitor_ids, key=lambda monitor_id: (fraction(monitor_id), monitor_id))
    return dict(zip(ordered, ranked_fractions(len(ordered), phase), strict=True))


def ranked_fractions(count: int, phase: float = 0.0) -> list[float]:
    """The grid fractions `spread` gives `count` monitors, by rank (0: the lowest hash), for a
    caller that ranks them itself (the scheduler sorts its entries by the hash it keeps)."""
    return [(phase + rank / count) % 1.0 for rank in range(count)]


def next_cron(expression: str, timezone: str, after: float) -> float:
    """The first time strictly after `after` (epoch seconds) that the cron expression names, read
    as wall-clock time in `timezone`."""
    start = datetime.fromtimestamp(after, ZoneInfo(timezone))
    # CronSim yields times after its start, at whole minutes (or seconds); never `after` itself.
    return next(CronSim(expression, start)).timestamp()


def validate_cron(expression: str, timezone: str, min_interval: int) -> None:
    """InvalidSettingError unless the expression parses and never fires closer together than
    the minimum interval (checked over its next runs)."""
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSettingError("timezone", f"unknown time zone {timezone!r}") from None
    try:
        runs = CronSim(expression, datetime(2026, 1, 1, tzinfo=tz))
        times = [next(runs) for _ in range(20)]
    except (CronSimError, StopIteration) as exc:
        raise InvalidSettingError("cron", f"not a valid cron expression: {exc}") from None
    gaps = [b.timestamp() - a.timestamp() for a, b in itertools.pairwise(times)]
    if gaps and min(gaps) < min_interval:
        raise InvalidSettingError("cron", f"runs more often than every {min_interval} s")
