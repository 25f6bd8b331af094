"""The distributed mode: every role a separate OS process, one PostgreSQL database per service,
RabbitMQ between them, and the real nginx gateway (deploy/nginx) as the one origin."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import (
    Process,
    Target,
    WebhookReceiver,
    delete_topology,
    free_port,
    nginx_config,
    wait_for,
)
from tests.e2e.roles import distributed_env, start_roles
from tests.e2e.scenario import run_thin_path
from tests.integration.security.keycloak import Keycloak

pytestmark = pytest.mark.e2e

ROLES = (
    "pinger-api",
    "scheduler",
    "probe",
    "probe",
    "evaluator",
    "notificator",
    "statistics",
    "web",
)


@pytest.fixture
async def peers() -> AsyncIterator[tuple[Target, WebhookReceiver]]:
    target, receiver = Target(), WebhookReceiver()
    await target.start()
    await receiver.start()
    yield target, receiver
    await target.stop()
    await receiver.stop()


async def test_distributed_mode_runs_the_whole_path_across_processes(
    tmp_path: Path,
    make_pg_database: Callable[[], Awaitable[str]],
    rabbitmq_url: str,
    keycloak_url: str,
    namespace: str,
    peers: tuple[Target, WebhookReceiver],
) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is needed (scripts/test-env.sh installs it)"
    target, receiver = peers
    keycloak = Keycloak.from_url(keycloak_url)
    env = await distributed_env(
        tmp_path,
        make_pg_database,
        rabbitmq_url=rabbitmq_url,
        namespace=namespace,
        # Identities come from the real Keycloak: every service verifies its tokens locally.
        issuer=keycloak.issuer(),
        services=("pinger", "notificator", "statistics"),
        PINGTOWER_DELIVERY_BACKOFF_SECONDS="0.2",
    )
    processes: list[Process] = []
    try:
        ports = await start_roles(ROLES, env, tmp_path, processes)
        assert not (tmp_path / "unused-data").exists(), "no role fell back to SQLite"

        gateway_port = free_port()
        gateway = Process(
            "nginx",
            [nginx, "-c", str(nginx_config(tmp_path, ports, gateway_port)), "-p", str(tmp_path)],
            {},
            tmp_path,
        )
        processes.append(gateway)
        base = f"http://127.0.0.1:{gateway_port}"
        token = await keycloak.user_token("alice-admin")  # admin of workspace acme
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as api:

            async def gateway_up() -> bool:
                return (await api.get("/healthz")).status_code == 200

            await wait_for(gateway_up, timeout=15, what="nginx to listen")
            root = (await api.get("/api/v1")).json()
            for spec_url in root["openapi"]:
                assert (await api.get(spec_url)).status_code == 200, spec_url
            dashboard = await api.get("/", headers={"Authorization": ""})
            assert dashboard.status_code == 200
            assert "text/html" in dashboard.headers["content-type"]
            unknown = await api.get("/api/v1/nothing-here")
            assert unknown.status_code == 404
            assert unknown.headers["content-type"] == "application/problem+json"
            monitor_id = await run_thin_path(api, target, receiver)

            # Workspaces hold across services: globex's admin does not see acme's monitor,
            # its results or its statistics, and acme's viewer cannot change anything.
            outsider = {"Authorization": f"Bearer {await keycloak.user_token('dave-admin')}"}
            for path in (
                f"/api/v1/monitors/{monitor_id}",
                f"/api/v1/monitors/{monitor_id}/results",
                f"/api/v1/stats/monitors/{monitor_id}/uptime",
            ):
                hidden = await api.get(path, headers=outsider)
                assert hidden.status_code == 404, (path, hidden.text)
            viewer = {"Authorization": f"Bearer {await keycloak.user_token('carol-viewer')}"}
            assert (await api.get(f"/api/v1/monitors/{monitor_id}", headers=viewer)).is_success
            refused = await api.post(f"/api/v1/monitors/{monitor_id}/pause", headers=viewer)
            assert refused.status_code == 403, refused.text
            assert (
                await api.get("/api/v1/monitors", headers={"Authorization": ""})
            ).status_code == 401
    except BaseException:
        for process in processes:
            print(f"--- {process.name} ---\n{process.log()}")
        raise
    finally:
        for process in reversed(processes):
            process.stop()
        await delete_topology(rabbitmq_url, namespace)
