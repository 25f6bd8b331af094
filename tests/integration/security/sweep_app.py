"""The real embedded app for the access sweep, its personas and the objects the owner workspace
keeps: started once for the module (in-process, no network), logged into the honest way."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Message

from pingtower.app import create_embedded_app
from pingtower.common.settings import Settings
from pingtower.identity.service import IdentityComponent
from pingtower.identity.store import users
from pingtower.identity.store.users import User

ADMIN_PASSWORD = "sweep-admin-password"
OWNER = "default"
OUTSIDER_WORKSPACE = "elsewhere"
WAIT_SECONDS = 10.0


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


@dataclass
class Sweep:
    app: ASGIApp
    client: httpx.AsyncClient
    spec: dict[str, Any]
    # Bearer token of each persona of the owner workspace; "anonymous" has none.
    tokens: dict[str, str | None] = field(default_factory=dict)
    # The admin of another workspace: its login session, and an admin API key it made.
    outsider: str = ""
    outsider_key: str = ""
    # Kind of object (the name of its id's path parameter) -> the owner's object.
    owned: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def call(
        self, method: str, path: str, token: str | None, json: Any = None
    ) -> httpx.Response:
        return await self.client.request(method, path, headers=bearer(token), json=json)

    async def as_owner(self, method: str, path: str, json: Any = None) -> httpx.Response:
        return await self.call(method, path, self.tokens["admin"], json)

    async def login(self, username: str, password: str) -> str:
        response = await self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        # The client keeps the session cookie; callers must be told apart by their bearer only.
        self.client.cookies.clear()
        token: str = response.json()["access_token"]
        return token


@dataclass
class OpenStream:
    status: int
    chunks: asyncio.Queue[bytes]

    async def read_until(self, marker: str, seconds: float = WAIT_SECONDS) -> str:
        """The text received until `marker` shows up; fails after `seconds`."""
        text = ""
        async with asyncio.timeout(seconds):
            while marker not in text:
                text += (await self.chunks.get()).decode()
        return text

    def received(self) -> str:
        """Everything received and not read yet, without waiting."""
        text = ""
        while not self.chunks.empty():
            text += self.chunks.get_nowait().decode()
        return text


@asynccontextmanager
async def open_stream(app: ASGIApp, path: str, token: str | None) -> AsyncIterator[OpenStream]:
    """A never-ending response (server-sent events), read as it comes: httpx's ASGI transport
    waits for the whole body, so the app is called directly and left when the block ends."""
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected until the call is cancelled
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and not started.done():
            started.set_result(int(message["status"]))
        elif message["type"] == "http.response.body" and message.get("body"):
            chunks.put_nowait(bytes(message["body"]))

    headers = [(b"host", b"testserver")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope: MutableMapping[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    async def run() -> None:
        await app(scope, receive, send)

    call = asyncio.create_task(run())
    try:
        status = await asyncio.wait_for(asyncio.shield(started), WAIT_SECONDS)
        yield OpenStream(status, chunks)
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call


async def stream_status(app: ASGIApp, path: str, token: str | None) -> int:
    """The status line of a never-ending response."""
    async with open_stream(app, path, token) as stream:
        return stream.status


async def add_outsider(identity: IdentityComponent, username: str, password: str) -> None:
    """The admin of another workspace. The API creates users only in the caller's own workspace
    and has no route that opens a workspace, so the test provisions one in the identity store,
    as an operator's tooling would."""
    now = datetime.now(UTC)
    outsider = User(
        id=uuid.uuid4(),
        tenant=OUTSIDER_WORKSPACE,
        username=username,
        password_hash=await identity.passwords.hash_async(password),
        role="admin",
        created_at=now,
        created_by="access-sweep",
        updated_at=now,
    )
    async with identity.sessions() as session, session.begin():
        await users.add(session, outsider)


async def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def eventually_ok(sweep: Sweep, path: str) -> None:
    """Wait (bounded) until the owner reads `path`: the statistics learn of a monitor by event."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        response = await sweep.as_owner("GET", path)
        if response.status_code == 200:
            return
        assert asyncio.get_running_loop().time() < deadline, (path, response.text)
        await asyncio.sleep(0.05)


async def create_owned_objects(sweep: Sweep) -> None:
    """One object of each kind in the owner workspace, keyed by its id's path parameter."""
    owned = sweep.owned
    owned["user_id"] = await created(
        await sweep.as_owner(
            "POST",
            "/api/v1/users",
            {"username": "owner-bystander", "password": "bystander-password", "role": "viewer"},
        )
    )
    owned["key_id"] = await created(
        await sweep.as_owner("POST", "/api/v1/api-keys", {"name": "owner-ci", "role": "editor"})
    )
    owned["monitor_id"] = await created(
        await sweep.as_owner(
            "POST",
            "/api/v1/monitors",
            {
                "name": "owner-site",
                "type": "http",
                "target": "http://127.0.0.1:9/",
                "interval_seconds": 60,
                # Paused: the sweep is about access, no check needs to run.
                "paused": True,
            },
        )
    )
    monitor_id = owned["monitor_id"]["id"]
    now = datetime.now(UTC)
    owned["window_id"] = await created(
        await sweep.as_owner(
            "POST",
            "/api/v1/maintenance-windows",
            {
                "name": "owner-maintenance",
                "kind": "once",
                "monitor_ids": [monitor_id],
                "starts_at": (now + timedelta(days=1)).isoformat(),
                "ends_at": (now + timedelta(days=1, hours=1)).isoformat(),
            },
        )
    )
    owned["channel_id"] = await created(
        await sweep.as_owner(
            "POST",
            "/api/v1/channels",
            {
                "name": "owner-hook",
                "type": "webhook",
                "settings": {"url": "http://127.0.0.1:9/hook"},
            },
        )
    )
    owned["rule_id"] = await created(
        await sweep.as_owner(
            "POST",
            "/api/v1/rules",
            {
                "name": "owner-rule",
                "events": ["down", "recovered"],
                "channel_ids": [owned["channel_id"]["id"]],
                "monitor_ids": [monitor_id],
            },
        )
    )
    owned["silence_id"] = await created(
        await sweep.as_owner(
            "POST",
            "/api/v1/silences",
            {
                "monitor_ids": [monitor_id],
                "ends_at": (now + timedelta(hours=2)).isoformat(),
                "comment": "owner-silence",
            },
        )
    )
    await eventually_ok(sweep, f"/api/v1/stats/monitors/{monitor_id}/uptime")
    slo = await created(
        await sweep.as_owner(
            "POST",
            "/api/v1/stats/slos",
            {"name": "owner-slo", "monitor_id": monitor_id, "objective": 0.999},
        )
    )
    # SLOs name their id `slo_id` where every other object says `id`.
    owned["slo_id"] = {**slo, "id": slo["slo_id"]}


@asynccontextmanager
async def running_sweep(data_dir: Path) -> AsyncIterator[Sweep]:
    settings = Settings(
        data_dir=data_dir,
        allow_private_targets=True,
        admin_password=ADMIN_PASSWORD,
        outbox_poll_seconds=0.05,
    )
    app = create_embedded_app(settings)
    identity: IdentityComponent = app.state.identity
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(manager.app), base_url="http://testserver"
        ) as client,
    ):
        spec = (await client.get("/api/v1/openapi.json")).json()
        sweep = Sweep(manager.app, client, spec)
        sweep.tokens["anonymous"] = None
        sweep.tokens["admin"] = await sweep.login("admin", ADMIN_PASSWORD)
        for role in ("viewer", "editor"):
            await created(
                await sweep.as_owner(
                    "POST",
                    "/api/v1/users",
                    {"username": f"sweep-{role}", "password": f"{role}-password", "role": role},
                )
            )
            sweep.tokens[role] = await sweep.login(f"sweep-{role}", f"{role}-password")
        for role in ("viewer", "editor"):
            key = await created(
                await sweep.as_owner(
                    "POST", "/api/v1/api-keys", {"name": f"sweep-{role}-key", "role": role}
                )
            )
            sweep.tokens[f"{role}-key"] = key["key"]
        await add_outsider(identity, "outsider-admin", "outsider-password")
        sweep.outsider = await sweep.login("outsider-admin", "outsider-password")
        key = await created(
            await sweep.call(
                "POST",
                "/api/v1/api-keys",
                sweep.outsider,
                {"name": "outsider-automation", "role": "admin"},
            )
        )
        sweep.outsider_key = key["key"]
        await create_owned_objects(sweep)
        yield sweep
