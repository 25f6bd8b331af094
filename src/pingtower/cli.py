"""`pingtower`: run the embedded system, serve one role, migrate, inspect settings."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from pingtower import __version__
from pingtower.common.logging import configure_logging
from pingtower.common.settings import (
    SERVICES,
    Settings,
    SettingsError,
    describe_settings,
    load_settings,
)
from pingtower.pinger.ascode.cli import register as register_monitors_as_code

cli = typer.Typer(
    name="pingtower",
    help="PingTower: self-hosted uptime monitoring. Settings come from PINGTOWER_* variables "
    "(see `pingtower settings`); options given here override them.",
    no_args_is_help=True,
    add_completion=False,
)

# A young collection once 50,000 more objects live (not 700): the objects of a check in flight
# (tens of ms to seconds) then die young instead of being promoted to the oldest generation,
# whose full collections walk the whole heap. With the defaults, at 10,000 monitors (300 MB)
# that was 6 or 7 full collections in 40 s, 0.5-1.4 s each with the event loop held; with
# these, none in the same 40 s (gc.callbacks, bench.schedule_keeping --loop-lag) and the
# same resident memory per monitor: little garbage here is cyclic.
GC_THRESHOLDS = (50_000, 20, 10)

HostOption = Annotated[str | None, typer.Option(help="Address to listen on (PINGTOWER_HOST).")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on (PINGTOWER_PORT).")]


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _run(coroutine: Any) -> None:
    """Run on uvloop where it is installed (it comes with uvicorn[standard]): less CPU per
    check than the standard event loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


def _serve(
    app: Any,
    settings: Settings,
    banner: list[str],
    after_start: Callable[[], list[str]] = list,
) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.started:
                return
            # Here, before the loop runs again, no request has been answered yet: the banner
            # is out before /readyz first says ready.
            # What start-up made (modules, the app, table metadata: ~100,000 objects) lives as
            # long as the process: frozen, full collections no longer walk it (70-105 ms each
            # in the probe's profile).
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            for line in [*banner, *after_start()]:
                typer.echo(line)

    server = Server(config)
    _run(server.serve())
    if not server.started:
        raise typer.Exit(1)


@cli.command()
def up(
    host: HostOption = None,
    port: PortOption = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the SQLite files live (PINGTOWER_DATA_DIR).")
    ] = None,
) -> None:
    """Run everything in one process: every service, the scheduler, a probe, the evaluator and
    the API, on SQLite files in the data directory and the in-process bus. Needs no server."""
    settings = _settings(host=host, port=port, data_dir=data_dir)
    configure_logging(settings.log_level, json=settings.log_json)
    from pingtower.app import admin_token, create_embedded_app
    from pingtower.identity.service import admin_banner

    app = create_embedded_app(settings)
    address = f"http://{settings.host}:{settings.port}"
    _serve(
        app,
        settings,
        [
            f"PingTower {__version__} is running at {address}",
            f"  data:   {settings.data_dir.resolve()}",
            f"  API:    {address}/api/v1  (docs: {address}/api/v1/docs)",
            f"  log in: POST {address}/api/v1/auth/login as user admin,",
            f"          or send 'Authorization: Bearer {admin_token(settings)}'",
            f"          (the admin token, kept in {settings.data_dir.resolve() / 'admin-token'})",
        ],
        lambda: admin_banner(app.state.identity),
    )


@cli.command()
def serve(
    role: Annotated[
        str,
        typer.Argument(
            help="pinger-api, scheduler, probe, evaluator, notificator, statistics, or pinger "
            "(all four pinger roles)."
        ),
    ],
    host: HostOption = None,
    port: PortOption = None,
) -> None:
    """Run one role of the distributed mode against PostgreSQL (PINGTOWER_<SERVICE>_DATABASE_URL)
    and RabbitMQ (PINGTOWER_BROKER_URL). Any role can run as several processes."""
    settings = _settings(host=host, port=port)
    configure_logging(settings.log_level, json=settings.log_json)
    from pingtower.app import create_role_app

    try:
        app = create_role_app(settings, role)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    _serve(app, settings, [f"PingTower {role} listening on http://{settings.host}:{settings.port}"])


@cli.command()
def migrate(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to migrate (default: all).")
    ] = None,
) -> None:
    """Upgrade the services' databases to the newest schema (also done at every start)."""
    settings = _settings()
    from pingtower.common.db import run_migrations
    from pingtower.identity.service import MIGRATIONS, identity_database_url
    from pingtower.roles import migrations_dir

    known = [*SERVICES, "identity"]
    for service in services or known:
        if service not in known:
            typer.echo(f"unknown service {service!r}; choose from {', '.join(known)}", err=True)
            raise typer.Exit(2)
        typer.echo(f"migrating {service} ...")
        if service == "identity":
            run_migrations(identity_database_url(settings), MIGRATIONS)
        else:
            run_migrations(settings.database_url(service), migrations_dir(service))  # type: ignore[arg-type]
    typer.echo("done")


@cli.command("settings")
def show_settings() -> None:
    """List every setting with its default and what it does."""
    for variable, default, description in describe_settings():
        typer.echo(
            f"{variable}\n    {description}" + (f"\n    default: {default}" if default else "")
        )


@cli.command()
def asyncapi() -> None:
    """Print the AsyncAPI document of every event (JSON)."""
    import json

    from pingtower.common.asyncapi import document

    typer.echo(json.dumps(document(), indent=2, sort_keys=True))


@cli.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


register_monitors_as_code(cli)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
