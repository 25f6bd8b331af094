"""A distributed PingTower for browser tests: the roles the dashboard needs (pinger API,
statistics, web), each its own process on PostgreSQL and RabbitMQ, behind the real nginx gateway,
with identities from the test Keycloak in a realm of their own.

The realm is the repository's export imported under a fresh name, so a test may shorten the
token lifespan and point the web client's redirect URIs at its gateway's port without touching
the shared `pingtower` realm other tests use; importing it also checks the export still imports.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.harness import (
    REPO,
    Process,
    delete_topology,
    free_port,
    nginx_config,
    wait_for,
)
from tests.e2e.roles import distributed_env, start_roles
from tests.integration.security.keycloak import DEMO_PASSWORDS, Keycloak

REALM_EXPORT = REPO / "deploy" / "keycloak" / "pingtower-realm.json"
WEB_CLIENT = "pingtower-web"
# The export's redirect and post-logout URIs for a PingTower on 127.0.0.1:8000; the test's
# gateway listens elsewhere, so that one origin is swapped for the gateway's.
EXPORTED_ORIGIN = "http://127.0.0.1:8000"
ROLES = ("pinger-api", "statistics", "web")


def realm_for(origin: str, name: str, access_token_seconds: int) -> dict[str, Any]:
    realm: dict[str, Any] = json.loads(REALM_EXPORT.read_text())
    realm["realm"] = name
    realm.pop("id", None)
    realm["accessTokenLifespan"] = access_token_seconds
    [web] = [client for client in realm["clients"] if client["clientId"] == WEB_CLIENT]
    assert f"{EXPORTED_ORIGIN}/*" in web["redirectUris"], "the export lets the web app back in"
    web["redirectUris"] = [u.replace(EXPORTED_ORIGIN, origin) for u in web["redirectUris"]]
    logout_uris = web["attributes"]["post.logout.redirect.uris"]
    assert f"{EXPORTED_ORIGIN}/*" in logout_uris.split("##"), "the export allows logout back"
    web["attributes"]["post.logout.redirect.uris"] = logout_uris.replace(EXPORTED_ORIGIN, origin)
    return realm


@asynccontextmanager
async def imported_realm(
    keycloak: Keycloak, origin: str, *, access_token_seconds: int
) -> AsyncIterator[str]:
    """The realm export under a fresh name, deleted afterwards; yields its issuer URL."""
    name = f"pt-web-{uuid.uuid4().hex[:10]}"
    headers = {"authorization": f"Bearer {await keycloak.master_admin_token()}"}
    async with httpx.AsyncClient(timeout=120, headers=headers) as admin:
        created = await admin.post(
            f"{keycloak.base}/admin/realms",
            json=realm_for(origin, name, access_token_seconds),
        )
        assert created.status_code == 201, created.text
        try:
            yield keycloak.issuer(name)
        finally:
            # The admin token may have expired meanwhile: ask for a fresh one.
            headers["authorization"] = f"Bearer {await keycloak.master_admin_token()}"
            await admin.delete(f"{keycloak.base}/admin/realms/{name}", headers=headers)


async def password_token(keycloak: Keycloak, issuer: str, username: str) -> str:
    """An access token for a demo user, through the CLI client's password grant."""
    answer = await keycloak.token(
        {
            "grant_type": "password",
            "client_id": "pingtower-cli",
            "username": username,
            "password": DEMO_PASSWORDS[username],
            "scope": "openid",
        },
        realm=issuer.rsplit("/", 1)[-1],
    )
    return str(answer["access_token"])


@dataclass(frozen=True)
class Gateway:
    base: str  # the one origin the browser sees
    issuer: str  # the test realm, as the browser and the services reach it
    processes: list[Process]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()}" for p in self.processes)


@asynccontextmanager
async def distributed_web(
    workdir: Path,
    make_pg_database: Callable[[], Awaitable[str]],
    rabbitmq_url: str,
    keycloak: Keycloak,
    namespace: str,
    *,
    access_token_seconds: int = 300,
) -> AsyncIterator[Gateway]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is needed (scripts/test-env.sh installs it)"
    gateway_port = free_port()
    base = f"http://127.0.0.1:{gateway_port}"
    async with imported_realm(keycloak, base, access_token_seconds=access_token_seconds) as issuer:
        env = await distributed_env(
            workdir,
            make_pg_database,
            rabbitmq_url=rabbitmq_url,
            namespace=namespace,
            issuer=issuer,
            services=("pinger", "statistics"),
        )
        processes: list[Process] = []
        try:
            ports = await start_roles(ROLES, env, workdir, processes)
            # The template names every service; the notificator is not needed here, so its
            # upstream is a port nobody listens on (its pages answer 502).
            ports["notificator"] = free_port()
            processes.append(
                Process(
                    "nginx",
                    [
                        nginx,
                        "-c",
                        str(nginx_config(workdir, ports, gateway_port)),
                        "-p",
                        str(workdir),
                    ],
                    {},
                    workdir,
                )
            )
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:

                async def gateway_up() -> bool:
                    return (await client.get("/api/v1/web/config")).status_code == 200

                await wait_for(gateway_up, timeout=15, what="nginx to listen")
            gateway = Gateway(base, issuer, processes)
            try:
                yield gateway
            except BaseException:
                print(gateway.logs())
                raise
        finally:
            for process in reversed(processes):
                process.stop()
            await delete_topology(rabbitmq_url, namespace)
