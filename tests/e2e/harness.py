"""Real peers for end-to-end tests: a switchable HTTP target, a webhook receiver, and PingTower
processes started as real OS processes whose logs are kept for the failure report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(
    predicate: Callable[[], Awaitable[Any]], *, timeout: float, what: str, every: float = 0.2
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await predicate()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Target:
    """The endpoint monitors probe. `stop()` closes the port, so checks see a refused connect."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hits = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    async def start(self) -> None:
        async def health(_request: web.Request) -> web.Response:
            self.hits += 1
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/health", health)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class WebhookReceiver:
    """Collects the JSON bodies PingTower posts to it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            self.received.append(await request.json())
            self.headers.append(dict(request.headers))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Process:
    """One PingTower process (or nginx) with its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def pingtower(*args: str) -> list[str]:
    return [sys.executable, "-m", "pingtower.cli", *args]


async def wait_ready(base_url: str, process: Process, timeout: float = 60) -> None:
    async with httpx.AsyncClient(timeout=5) as client:

        async def ready() -> bool:
            if process.proc.poll() is not None:
                raise AssertionError(f"{process.name} exited:\n{process.log()}")
            response = await client.get(f"{base_url}/readyz")
            return response.status_code == 200

        try:
            await wait_for(ready, timeout=timeout, what=f"{process.name} to be ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {process.name} log ---\n{process.log()}") from None


async def delete_topology(url: str, namespace: str) -> None:
    """Remove a test namespace's queues and exchanges from the shared RabbitMQ."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in (
            "pinger.evaluator",
            "notificator.events",
            "statistics.ingest",
            "jobs.default",
            "dead-letters",
        ):
            with contextlib.suppress(Exception):
                await channel.queue_delete(f"{namespace}.{queue}")
        for exchange in ("events", "jobs", "dlx"):
            with contextlib.suppress(Exception):
                await channel.exchange_delete(f"{namespace}.{exchange}")


def nginx_config(workdir: Path, ports: dict[str, int], listen: int) -> Path:
    """The gateway for role processes on `ports`, from the template operators deploy."""
    sys.path.insert(0, str(REPO / "deploy" / "nginx"))
    try:
        import render  # the same template operators deploy
    finally:
        sys.path.pop(0)
    config = workdir / "nginx.conf"
    config.write_text(
        render.standalone(
            {
                "PINGER_API": f"127.0.0.1:{ports['pinger-api']}",
                "NOTIFICATOR": f"127.0.0.1:{ports['notificator']}",
                "STATISTICS": f"127.0.0.1:{ports['statistics']}",
                "WEB": f"127.0.0.1:{ports['web']}",
                "LISTEN": f"127.0.0.1:{listen}",
            },
            workdir,
        )
    )
    return config
