"""Heartbeat pings, compatible with Healthchecks' ping API: `/ping/<key>` (success),
`/ping/<key>/start`, `/ping/<key>/fail`, `/ping/<key>/<exit-status>`, by GET or POST, with an
optional body kept up to a size. No credentials: the unguessable key is the credential.

A ping becomes a `check.completed` written through the outbox in the same transaction as the
heartbeat's times, so the evaluator treats it exactly like a probe's result. It also sets when
the scheduler's lateness watcher must next look at the heartbeat: at its new deadline.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import select, update

from pingtower.common.events import CheckCompleted, Outcome, utcnow
from pingtower.common.http.problems import not_found
from pingtower.pinger.domain.heartbeat import (
    SCHEDULE_ERRORS,
    HeartbeatState,
    expected_of,
    grace_of,
    next_check,
)
from pingtower.pinger.store.database import PingerDatabase
from pingtower.pinger.store.tables import heartbeats, monitors

MAX_BODY_BYTES = 10_000
PUSH_REGION = "push"


async def _body(request: Request) -> str:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) >= MAX_BODY_BYTES:
            break
    return body[:MAX_BODY_BYTES].decode(errors="replace")


def _next_look(row: Any, state: HeartbeatState, now: datetime) -> datetime:
    """When the lateness watcher must look at the heartbeat next, in its new state: now when
    the schedule cannot be worked out (the watcher then logs why)."""
    expected = expected_of(row.interval_seconds, row.cron, row.timezone)
    try:
        return next_check(state, now, expected, grace_of(row.settings))
    except SCHEDULE_ERRORS:
        return now


def heartbeat_router(db: PingerDatabase) -> APIRouter:
    router = APIRouter(prefix="/ping", tags=["heartbeats"])

    async def record(key: uuid.UUID, signal: str, request: Request) -> PlainTextResponse:
        """signal: "success", "start", "fail" or an exit status."""
        body = await _body(request)
        now = utcnow()
        async with db.sessions() as session, session.begin():
            row = (
                await session.execute(
                    select(
                        heartbeats,
                        monitors.c.tenant,
                        monitors.c.created_at,
                        monitors.c.interval_seconds,
                        monitors.c.cron,
                        monitors.c.timezone,
                        monitors.c.settings,
                    )
                    .join(monitors, monitors.c.id == heartbeats.c.monitor_id)
                    .where(heartbeats.c.ping_key == key, monitors.c.deleted_at.is_(None))
                )
            ).first()
            if row is None:
                raise not_found("heartbeat")
            where = heartbeats.c.monitor_id == row.monitor_id
            if signal == "start":
                started = HeartbeatState(row.created_at, row.last_ping_at, now, None)
                await session.execute(
                    update(heartbeats)
                    .where(where)
                    .values(run_started_at=now, check_at=_next_look(row, started, now))
                )
                return PlainTextResponse("OK")
            ok = signal == "success" or signal == "0"
            running = row.run_started_at is not None and (
                row.last_ping_at is None or row.run_started_at > row.last_ping_at
            )
            pinged = HeartbeatState(row.created_at, now, None, None)
            await session.execute(
                update(heartbeats)
                .where(where)
                .values(
                    last_ping_at=now, run_started_at=None, check_at=_next_look(row, pinged, now)
                )
            )
            kind = None if ok else ("heartbeat_fail" if signal == "fail" else "exit_status")
            message = None
            if not ok:
                message = body or (
                    "the job reported a failure"
                    if signal == "fail"
                    else f"the job exited with status {signal}"
                )
            result = CheckCompleted(
                check_id=uuid.uuid4(),
                monitor_id=row.monitor_id,
                region=PUSH_REGION,
                scheduled_at=now,
                started_at=row.run_started_at if running else now,
                finished_at=now,
                outcome=Outcome.UP if ok else Outcome.DOWN,
                latency_ms=(now - row.run_started_at).total_seconds() * 1000 if running else None,
                error_kind=kind,
                error_message=message[:1000] if message else None,
                size_bytes=len(body.encode()),
            )
            await db.outbox.add(session, result, tenant=row.tenant, occurred_at=now)
        return PlainTextResponse("OK")

    async def ping(key: uuid.UUID, request: Request) -> PlainTextResponse:
        return await record(key, "success", request)

    async def ping_start(key: uuid.UUID, request: Request) -> PlainTextResponse:
        return await record(key, "start", request)

    async def ping_fail(key: uuid.UUID, request: Request) -> PlainTextResponse:
        return await record(key, "fail", request)

    async def ping_exit(key: uuid.UUID, exit_status: int, request: Request) -> PlainTextResponse:
        if not 0 <= exit_status <= 255:
            raise not_found("exit status")
        return await record(key, str(exit_status), request)

    # One route per method, so that each has its own OpenAPI operation id (a route with several
    # methods gives them all the same id).
    for path, endpoint, summary in (
        ("/{key}", ping, "The job succeeded"),
        ("/{key}/start", ping_start, "The job started"),
        ("/{key}/fail", ping_fail, "The job failed"),
        ("/{key}/{exit_status}", ping_exit, "The job exited (0: success)"),
    ):
        for method in ("GET", "POST", "HEAD"):
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                summary=summary,
                operation_id=f"{endpoint.__name__}_{method.lower()}",
            )

    return router
