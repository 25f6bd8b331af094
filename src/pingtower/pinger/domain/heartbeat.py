"""Heartbeat (push) monitors: the monitored job calls us; silence is the failure.

A heartbeat expects a ping either every period or at each time a cron expression names in a
time zone. It is late when no ping arrived by the next expected run after its last ping (after
its creation when it never pinged) plus a grace time, or when a run that signalled its start
has not finished within the grace time. A late heartbeat is reported once per expected run
while it stays late (the next report is due one expected run after the last one), so the
confirmation counts of the status machine work the same as for checks the probes run.

`next_check` tells the scheduler's watcher when to look at a heartbeat again, so that it reads
only the heartbeats due, never all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSimError

from pingtower.pinger.domain.schedule import next_cron

DEFAULT_GRACE_SECONDS = 60

# What the schedule maths below raise for a cron expression or time zone that does not work.
# The API validates both; one that stopped working (a zone gone from the time zone database)
# must fail only its own heartbeat.
SCHEDULE_ERRORS = (CronSimError, ValueError, LookupError)


@dataclass(frozen=True)
class HeartbeatState:
    created_at: datetime
    last_ping_at: datetime | None
    run_started_at: datetime | None
    reported_late_at: datetime | None


@dataclass(frozen=True)
class CronSchedule:
    """Pings expected at the times a cron expression names, as wall-clock time in a zone."""

    expression: str
    timezone: str


# A period between pings, or a cron schedule.
Expected = timedelta | CronSchedule


@dataclass(frozen=True)
class Late:
    kind: str
    message: str
    deadline: datetime


def expected_of(interval_seconds: int, cron: str | None, timezone: str) -> Expected:
    """The monitor's expectation: its cron schedule when it has one, else its period."""
    if cron is not None:
        return CronSchedule(cron, timezone)
    return timedelta(seconds=interval_seconds)


def grace_of(settings: Mapping[str, Any]) -> timedelta:
    return timedelta(seconds=int(settings.get("grace_seconds", DEFAULT_GRACE_SECONDS)))


def expected_after(expected: Expected, moment: datetime) -> datetime:
    """The first expected run strictly after `moment` (a period's: one period later)."""
    if isinstance(expected, timedelta):
        return moment + expected
    fires = next_cron(expected.expression, expected.timezone, moment.timestamp())
    return datetime.fromtimestamp(fires, UTC)


def deadline(state: HeartbeatState, expected: Expected, grace: timedelta) -> tuple[datetime, str]:
    """When the heartbeat becomes late, and why it would be."""
    due = expected_after(expected, state.last_ping_at or state.created_at) + grace
    if state.run_started_at is not None and (
        state.last_ping_at is None or state.run_started_at > state.last_ping_at
    ):
        run_due = state.run_started_at + grace
        if run_due < due:
            return run_due, "heartbeat_run_too_long"
    return due, "heartbeat_missed"


def _reported_again_at(reported: datetime, expected: Expected, grace: timedelta) -> datetime:
    """When a lateness reported at `reported` is due to be reported again: at the deadline of
    the run expected after the one that report was for (for a period: one period later)."""
    return expected_after(expected, reported - grace) + grace


def _still_reported(
    state: HeartbeatState, now: datetime, due: datetime, expected: Expected, grace: timedelta
) -> datetime | None:
    """The time the current lateness is next reported, when a report already covers `now`."""
    reported = state.reported_late_at
    if reported is None or reported < due:
        return None
    again = _reported_again_at(reported, expected, grace)
    return again if now < again else None


def lateness(
    state: HeartbeatState, now: datetime, expected: Expected, grace: timedelta
) -> Late | None:
    """A failure to report now, or None (on time, or already reported for this expected run)."""
    due, kind = deadline(state, expected, grace)
    if now < due or _still_reported(state, now, due, expected, grace) is not None:
        return None
    if kind == "heartbeat_run_too_long":
        message = "the job started and did not finish within the grace time"
    elif isinstance(expected, timedelta):
        message = "no ping within the period and grace time"
    else:
        message = "no ping by the time the cron schedule names and the grace time"
    return Late(kind, message, due)


def next_check(
    state: HeartbeatState, now: datetime, expected: Expected, grace: timedelta
) -> datetime:
    """The earliest time from `now` at which `lateness` may say something other than None (as
    long as nothing changes the state): the deadline, or the next report of a lateness already
    reported; `now` itself when the heartbeat is late and not reported."""
    due, _ = deadline(state, expected, grace)
    if now < due:
        return due
    again = _still_reported(state, now, due, expected, grace)
    return now if again is None else again


def reported(state: HeartbeatState, now: datetime) -> HeartbeatState:
    """The state once its lateness was reported at `now`."""
    return replace(state, reported_late_at=now)
