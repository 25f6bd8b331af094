"""`pingtower up` as a real process: one process, SQLite files, the in-process bus."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Process, Target, WebhookReceiver, free_port, pingtower, wait_ready
from tests.e2e.scenario import run_thin_path

pytestmark = pytest.mark.e2e


@pytest.fixture
async def peers() -> AsyncIterator[tuple[Target, WebhookReceiver]]:
    target, receiver = Target(), WebhookReceiver()
    await target.start()
    await receiver.start()
    yield target, receiver
    await target.stop()
    await receiver.stop()


async def test_embedded_mode_runs_the_whole_path_in_one_process(
    tmp_path: Path, peers: tuple[Target, WebhookReceiver]
) -> None:
    target, receiver = peers
    port = free_port()
    data_dir = tmp_path / "data"
    process = Process(
        "pingtower-up",
        pingtower("up", "--port", str(port), "--data-dir", str(data_dir)),
        {
            "PINGTOWER_ALLOW_PRIVATE_TARGETS": "true",
            "PINGTOWER_MIN_INTERVAL_SECONDS": "1",
            "PINGTOWER_DELIVERY_BACKOFF_SECONDS": "0.2",
        },
        tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, process)
        banner = process.log()  # printed before /readyz first answers (cli.py: _serve)
        assert f"running at {base}" in banner
        token = (data_dir / "admin-token").read_text().strip()
        assert token in banner, "the banner says how to log in"
        printed = re.search(r"user 'admin', password '([^']+)'", banner)
        assert printed, f"the first start prints the admin password:\n{banner}"
        assert sorted(p.name for p in data_dir.glob("*.sqlite3")) == [
            "identity.sqlite3",
            "notificator.sqlite3",
            "pinger.sqlite3",
            "statistics.sqlite3",
        ]
        async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous_client:
            login = await anonymous_client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": printed.group(1)}
            )
            assert login.status_code == 200, login.text
            session = login.json()["access_token"]
            me = await anonymous_client.get(
                "/api/v1/auth/me", headers={"Authorization": f"Bearer {session}"}
            )
            assert me.json()["workspace"] == "default"
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {session}"}, timeout=10
        ) as api:
            assert (await api.get("/healthz")).status_code == 200
            anonymous = await api.get("/api/v1/monitors", headers={"Authorization": ""})
            assert anonymous.status_code == 401
            assert anonymous.headers["content-type"] == "application/problem+json"
            spec = (await api.get("/api/v1/openapi.json")).json()
            for path in ("/api/v1/monitors", "/api/v1/channels", "/api/v1/stats/overview"):
                assert path in spec["paths"], path
            await run_thin_path(api, target, receiver)
    except BaseException:
        print(process.log())
        raise
    finally:
        process.stop()
