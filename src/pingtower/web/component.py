"""The WebUi component: the dashboard shell at `/`, its assets at `/static`, the public status
page at `/status/{workspace}`, and the live stream at `/api/v1/events/stream`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from pathlib import Path

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from prometheus_client import Counter, Gauge

from pingtower.common.events import Envelope
from pingtower.common.http.problems import not_found
from pingtower.common.messaging.bus import Bus
from pingtower.common.runtime import Component
from pingtower.common.security import Principal, require
from pingtower.web.domain.fanout import Fanout, LiveEvent
from pingtower.web.domain.statuspage import StatusBoard, overall

log = structlog.get_logger(__name__)

STATIC = Path(str(resources.files("pingtower.web") / "static"))
LIVE_KEYS = ["monitor.status_changed", "incident.*"]
# The status page also needs to know which monitors exist and which are public.
BOARD_KEYS = ["monitor.created", "monitor.updated", "monitor.deleted"]
# Sent to the browsers: status changes, incidents, and deletions (so open pages drop the row).
PUSHED = {"monitor.status_changed", "monitor.deleted"}
KEEPALIVE_SECONDS = 15.0
# Assets are not fingerprinted (no build step), so browsers revalidate after a short while.
ASSET_CACHE = "public, max-age=300"
SHELL_CACHE = "no-cache"
WORKSPACE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")

LIVE_CONNECTIONS = Gauge("pingtower_web_live_connections", "Open live-update streams")
LIVE_EVENTS = Counter("pingtower_web_live_events_total", "Events fanned out to live streams")
LIVE_DROPPED = Counter(
    "pingtower_web_live_dropped_total", "Events dropped because a live stream was too slow"
)

# The shell loads nothing from another origin; the CSP makes a mistake there visible at once.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class WebUi(Component):
    name = "web"

    def __init__(self, bus: Bus, *, queue_capacity: int = 256) -> None:
        self.bus = bus
        self.fanout = Fanout(queue_capacity)
        self.board = StatusBoard()

    async def on_events(self, envelopes: Sequence[Envelope]) -> None:
        """Fast and never raises: the in-process bus waits for it before a publish returns."""
        for envelope in envelopes:
            try:
                self.board.apply(envelope.tenant, envelope.parse())
                if envelope.type in PUSHED or envelope.type.startswith("incident."):
                    data = json.dumps(
                        {
                            "type": envelope.type,
                            "occurred_at": envelope.occurred_at.isoformat(),
                            "payload": envelope.payload,
                        },
                        default=str,
                    )
                    LIVE_EVENTS.inc(
                        self.fanout.publish(LiveEvent(envelope.tenant, envelope.type, data))
                    )
            except Exception as error:
                # A bad event must not hold back the bus (or be redelivered forever): the
                # dashboard only loses one live update, which its next reload corrects.
                log.warning("web.event_ignored", type=envelope.type, error=str(error))

    async def prepare(self) -> None:
        self.bus.subscribe(
            "web.live", [*LIVE_KEYS, *BOARD_KEYS], self.on_events, max_batch=500, broadcast=True
        )

    async def stop(self) -> None:
        self.fanout.close()

    @property
    def routers(self) -> Sequence[APIRouter]:
        return (self._live_router(),)

    @property
    def root_routers(self) -> Sequence[APIRouter]:
        return (self._pages_router(),)

    def _live_router(self) -> APIRouter:
        router = APIRouter(prefix="/events", tags=["live"])
        fanout = self.fanout

        @router.get(
            "/stream",
            summary="Server-sent events: status changes and incidents of the caller's workspace",
            response_class=StreamingResponse,
        )
        async def stream(
            request: Request, principal: Principal = Depends(require("viewer"))
        ) -> StreamingResponse:
            subscription = fanout.subscribe(principal.tenant)

            async def body() -> AsyncIterator[str]:
                LIVE_CONNECTIONS.inc()
                try:
                    yield "retry: 3000\n: connected\n\n"
                    while not subscription.closed:
                        if await request.is_disconnected():
                            break
                        batch = await subscription.next(KEEPALIVE_SECONDS)
                        if batch is None:
                            yield ": keep-alive\n\n"
                            continue
                        events, dropped = batch
                        if dropped:
                            LIVE_DROPPED.inc(dropped)
                            yield f"event: dropped\ndata: {dropped}\n\n"
                        for event in events:
                            yield f"event: {event.type}\ndata: {event.data}\n\n"
                except asyncio.CancelledError:
                    raise
                finally:
                    fanout.unsubscribe(subscription)
                    LIVE_CONNECTIONS.dec()

            return StreamingResponse(
                body(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )

        return router

    def _pages_router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        board = self.board

        def page(name: str) -> HTMLResponse:
            html = (STATIC / name).read_text()
            return HTMLResponse(html, headers={"Cache-Control": SHELL_CACHE, **SECURITY_HEADERS})

        @router.get("/")
        async def shell() -> HTMLResponse:
            return page("index.html")

        @router.get("/static/{name}")
        async def asset(name: str) -> FileResponse:
            # Only the flat files shipped in static/: no path walks out of it.
            path = STATIC / name
            if "/" in name or name.startswith(".") or not path.is_file():
                raise not_found("asset")
            return FileResponse(path, headers={"Cache-Control": ASSET_CACHE, **SECURITY_HEADERS})

        @router.get("/status/{workspace}")
        async def status_page(workspace: str) -> HTMLResponse:
            if not WORKSPACE.match(workspace):
                raise not_found("status page")
            return page("status.html")

        @router.get("/status/{workspace}/summary.json")
        async def status_summary(workspace: str) -> JSONResponse:
            if not WORKSPACE.match(workspace):
                raise not_found("status page")
            monitors = board.monitors(workspace)
            body = {
                "workspace": workspace,
                "overall": overall(monitors),
                "monitors": [
                    {
                        "name": m.name,
                        "group": m.group,
                        "status": m.status.value,
                        "since": m.since.isoformat() if m.since else None,
                        "incident": (
                            {
                                "started_at": m.incident_started_at.isoformat(),
                                "cause": m.incident_cause,
                            }
                            if m.incident_started_at
                            else None
                        ),
                    }
                    for m in monitors
                ],
                "past_incidents": [
                    {
                        "name": i.name,
                        "started_at": i.started_at.isoformat(),
                        "resolved_at": i.resolved_at.isoformat(),
                    }
                    for i in board.past_incidents(workspace)
                ],
            }
            return JSONResponse(body, headers={"Cache-Control": "public, max-age=10"})

        return router
