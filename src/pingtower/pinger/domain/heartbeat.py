"""Heartbeat (push) monitors: the monitored job calls us; silence is the failure.

A heartbeat is late when no ping arrived within its period plus a grace time, or when a run
that signalled its start has not finished within the grace time. A late heartbeat is reported
once per period while it stays late, so the confirmation counts of the status machine work the
same as for checks the probes run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class HeartbeatState:
    created_at: datetime
    last_ping_at: datetime | None
    run_started_at: datetime | None
    reported_late_at: datetime | None


@dataclass(frozen=True)
class Late:
    kind: str
    message: str
    deadline: datetime


def deadline(state: HeartbeatState, period: timedelta, grace: timedelta) -> tuple[datetime, str]:
    """When the heartbeat becomes late, and why it would be."""
    due = (state.last_ping_at or state.created_at) + period + grace
    if state.run_started_at is not None and (
        state.last_ping_at is None or state.run_started_at > state.last_ping_at
    ):
        run_due = state.run_started_at + grace
        if run_due < due:
            return run_due, "heartbeat_run_too_long"
    return due, "heartbeat_missed"


def lateness(
    state: HeartbeatState, now: datetime, period: timedelta, grace: timedelta
) -> Late | None:
    """A failure to report now, or None (on time, or already reported this period)."""
    due, kind = deadline(state, period, grace)
    if now < due:
        return None
    reported = state.reported_late_at
    if reported is not None and reported >= due and now < reported + period:
        return None
    message = (
        "the job started and did not finish within the grace time"
        if kind == "heartbeat_run_too_long"
        else "no ping within the period and grace time"
    )
    return Late(kind, message, due)
