"""The WebUi component: the dashboard shell at `/`, its assets at `/static`, the public status
page at `/status/{workspace}`, the live stream at `/api/v1/events/stream`, and which login the
dashboard uses at `/api/v1/web/config`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Literal

import structlog
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field

from pingtower.common.events import Envelope
from pingtower.common.http.problems import not_found
from pingtower.common.messaging.bus import Bus
from pingtower.common.runtime import Component
from pingtower.common.security import Principal, require
from pingtower.web.domain.fanout import Fanout, LiveEvent
from pingtower.web.domain.login import LoginConfig, security_headers
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


class OidcClient(BaseModel):
    issuer: str = Field(description="The issuer's URL as the browser reaches it.")
    client_id: str = Field(description="Public client: authorization code flow with PKCE (S256).")
    scopes: str = Field(description="Scopes to ask for, space-separated.")
    api_client: str = Field(
        description="The API's client: its client roles in the access token are PingTower roles."
    )
    workspace_claim: str = Field(description="The access-token claim holding the workspace.")


class WebConfig(BaseModel):
    login: Literal["builtin", "oidc"] = Field(
        description="`builtin`: PingTower's own login (POST /api/v1/auth/login). `oidc`: log in "
        "at the issuer below."
    )
    oidc: OidcClient | None = None


class WebUi(Component):
    name = "web"

    def __init__(
        self, bus: Bus, *, queue_capacity: int = 256, login: LoginConfig | None = None
    ) -> None:
        self.bus = bus
        self.fanout = Fanout(queue_capacity)
        self.board = StatusBoard()
        self.login = login or LoginConfig()
        self.security_headers = security_headers(self.login.connect_sources())

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
        return (self._live_router(), self._config_router())

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

    def _config_router(self) -> APIRouter:
        router = APIRouter(prefix="/web", tags=["web"])
        config = WebConfig.model_validate(self.login.public())

        @router.get(
            "/config",
            summary="Which login the dashboard uses (public: the browser asks before logging in)",
        )
        async def web_config(response: Response) -> WebConfig:
            response.headers["Cache-Control"] = "no-cache"
            return config

        return router

    def _pages_router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        board = self.board
        headers = self.security_headers

        def page(name: str) -> HTMLResponse:
            html = (STATIC / name).read_text()
            return HTMLResponse(html, headers={"Cache-Control": SHELL_CACHE, **headers})

        @router.get("/")
        async def shell() -> HTMLResponse:
            return page("index.html")

        @router.get("/static/{name}")
        async def asset(name: str) -> FileResponse:
            # Only the flat files shipped in static/: no path walks out of it.
            path = STATIC / name
            if "/" in name or name.startswith(".") or not path.is_file():
                raise not_found("asset")
            return FileResponse(path, headers={"Cache-Control": ASSET_CACHE, **headers})

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
                        "monitor_id": str(m.monitor_id),
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
            }
            return JSONResponse(body, headers={"Cache-Control": "public, max-age=10"})

        return router
