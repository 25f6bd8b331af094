"""The roles of one distributed PingTower under test: the environment they share, and
starting them as processes one after another."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tests.e2e.harness import Process, free_port, pingtower, wait_ready


async def distributed_env(
    workdir: Path,
    make_pg_database: Callable[[], Awaitable[str]],
    *,
    rabbitmq_url: str,
    namespace: str,
    issuer: str,
    services: Sequence[str],
    **settings: str,
) -> dict[str, str]:
    """A fresh PostgreSQL database for each of `services` (`pinger`, `notificator`,
    `statistics`), the broker namespace, the Keycloak issuer every service verifies its tokens
    against, then `settings` (PINGTOWER_... names)."""
    env = {"PINGTOWER_BROKER_URL": rabbitmq_url, "PINGTOWER_BROKER_NAMESPACE": namespace}
    for service in services:
        env[f"PINGTOWER_{service.upper()}_DATABASE_URL"] = await make_pg_database()
    env |= {
        "PINGTOWER_OIDC_ISSUER": issuer,
        "PINGTOWER_SECRET_KEY": secrets.token_urlsafe(32),
        "PINGTOWER_ALLOW_PRIVATE_TARGETS": "true",
        "PINGTOWER_MIN_INTERVAL_SECONDS": "1",
        # Where a role without a database URL would put SQLite files: a test can check that no
        # role did.
        "PINGTOWER_DATA_DIR": str(workdir / "unused-data"),
    }
    return env | settings


async def start_roles(
    roles: Sequence[str], env: dict[str, str], workdir: Path, processes: list[Process]
) -> dict[str, int]:
    """`pingtower serve ROLE` for each role (one process per entry, so a role may repeat), each
    ready before the next starts: migrations take a lock, and one at a time keeps the logs
    readable. Started processes are added to `processes`, for the caller to stop even when a
    later one fails; returns each role's port (the first, where a role repeats)."""
    ports: dict[str, int] = {}
    for index, role in enumerate(roles):
        port = free_port()
        ports.setdefault(role, port)
        name = role if roles.count(role) == 1 else f"{role}-{index}"
        process = Process(name, pingtower("serve", role, "--port", str(port)), env, workdir)
        processes.append(process)
        await wait_ready(f"http://127.0.0.1:{port}", process)
    return ports
