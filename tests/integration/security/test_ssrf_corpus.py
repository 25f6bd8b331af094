"""The SSRF corpus (issue 6) through the real HTTP APIs: hostile addresses are refused when a
monitor (Pinger) or a channel (Notificator) is saved, with 422 naming the field and saying why,
under both policies (private targets allowed, as in the embedded mode, and refused, as in the
distributed mode); a redirect to a refused address is refused at connect time, before any
connection; the allow-list opens its networks and nothing else; the monitor quota; mass
assignment.

How the odd forms are read: Python's ipaddress accepts none of the legacy IPv4 forms
(2130706433, 0177.0.0.1, 0x7f000001) and yarl keeps them as they are written, so aiohttp hands
them to getaddrinfo, which (glibc's inet_aton) reads them as 127.0.0.1; the connect-time guard
therefore sees 127.0.0.1. The save-time check reads them as inet_aton does, without DNS.
Pydantic's URL type (the channels' URLs) normalises them to dotted form before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from aiohttp import web
from asgi_lifespan import LifespanManager
from typer.testing import CliRunner

from pingtower.common.events import CheckJob, Outcome, utcnow
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.runtime import build_app
from pingtower.common.settings import Settings
from pingtower.notificator.service import NotificatorComponent
from pingtower.pinger.ascode.cli import register
from pingtower.pinger.checks.base import CheckContext, get_check
from tests.e2e.harness import Process, free_port, pingtower, wait_ready
from tests.integration.notificator.conftest import HeaderAuthenticator as NotificatorAuth
from tests.integration.pinger.harness import eventually, running_pinger

PROBLEM = "application/problem+json"

# (check type, target, settings, field named in the 422)
Monitor = tuple[str, str, dict[str, Any], str]

# Refused whatever the setting: link-local (cloud metadata) in every spelling.
MONITORS_ALWAYS_REFUSED: list[Monitor] = [
    ("http", "http://169.254.169.254/latest/meta-data/", {}, "target"),
    ("http", "http://[fe80::1]/", {}, "target"),
    ("http", "http://[::ffff:169.254.169.254]/", {}, "target"),
    ("http", "http://2852039166/", {}, "target"),  # decimal
    ("http", "http://0251.0376.0251.0376/", {}, "target"),  # octal
    ("http", "http://0xa9fea9fe/", {}, "target"),  # hex
    ("http", "http://[64:ff9b::a9fe:a9fe]/", {}, "target"),  # NAT64
    ("tcp", "169.254.169.254:80", {}, "target"),
    ("tcp", "[fe80::1]:22", {}, "target"),
    ("tls", "0251.0376.0251.0376:443", {}, "target"),
    ("icmp", "169.254.169.254", {}, "target"),
    ("dns", "example.com", {"resolver": "169.254.169.254"}, "settings.resolver"),
    ("dns", "example.com", {"resolver": "[fe80::1]:53"}, "settings.resolver"),
]

# Loopback and private: refused unless the setting allows private targets. The first list all
# reach 127.0.0.1 (the allow-list test opens 127.0.0.0/8 for them), the second do not.
MONITORS_LOOPBACK_V4: list[Monitor] = [
    ("http", "http://127.0.0.1:9/", {}, "target"),
    ("http", "http://[::ffff:127.0.0.1]/", {}, "target"),
    ("http", "http://2130706433/", {}, "target"),  # decimal
    ("http", "http://0177.0.0.1/", {}, "target"),  # octal
    ("http", "http://0x7f000001/", {}, "target"),  # hex
    ("http", "http://127.1/", {}, "target"),  # short form
    ("http", "http://localhost:9/", {}, "target"),  # a name resolving to loopback
    ("tcp", "localhost:5432", {}, "target"),
    ("tcp", "[::ffff:127.0.0.1]:22", {}, "target"),
    ("icmp", "0177.0.0.1", {}, "target"),
    ("dns", "example.com", {"resolver": "127.0.0.1:5353"}, "settings.resolver"),
]
MONITORS_OTHER_PRIVATE: list[Monitor] = [
    ("http", "http://[::1]:9/", {}, "target"),
    ("http", "http://10.0.0.1/", {}, "target"),
    ("tls", "192.168.1.1:443", {}, "target"),
    ("tcp", "[fd00::1]:22", {}, "target"),
]
MONITORS_PRIVATE = MONITORS_LOOPBACK_V4 + MONITORS_OTHER_PRIVATE

UNEXPECTED_SCHEMES = ["file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://8.8.8.8/"]

# (channel type, settings, field named in the 422)
Channel = tuple[str, dict[str, Any], str]


def _webhook(url: str) -> Channel:
    return ("webhook", {"url": url}, "settings.url")


EMAIL = {"port": 25, "security": "plain", "from_address": "pt@example.com", "to": ["a@example.com"]}
TELEGRAM = {"bot_token": "123456:abcdef", "chat_id": "42"}

CHANNELS_ALWAYS_REFUSED: list[Channel] = [
    _webhook("http://169.254.169.254/latest/meta-data/"),
    _webhook("http://[fe80::1]/"),
    _webhook("http://[::ffff:169.254.169.254]/"),
    _webhook("http://2852039166/"),
    _webhook("http://0251.0376.0251.0376/"),
    _webhook("http://0xa9fea9fe/"),
    ("slack", {"webhook_url": "http://169.254.169.254/hook"}, "settings.webhook_url"),
    ("discord", {"webhook_url": "http://[fe80::1]/hook"}, "settings.webhook_url"),
    ("teams", {"webhook_url": "http://0251.0376.0251.0376/"}, "settings.webhook_url"),
    ("telegram", {**TELEGRAM, "api_base_url": "http://169.254.169.254"}, "settings.api_base_url"),
    ("email", {**EMAIL, "host": "169.254.169.254"}, "settings.host"),
    ("email", {**EMAIL, "host": "0251.0376.0251.0376"}, "settings.host"),
    ("apprise", {"urls": ["json://169.254.169.254/hook"]}, "settings.urls[0]"),
]

CHANNELS_PRIVATE: list[Channel] = [
    _webhook("http://127.0.0.1:9/hook"),
    _webhook("http://[::ffff:127.0.0.1]/hook"),
    _webhook("http://2130706433/hook"),
    _webhook("http://0177.0.0.1/hook"),
    _webhook("http://0x7f000001/hook"),
    _webhook("http://localhost:9/hook"),
    _webhook("http://192.168.1.1/hook"),
    ("slack", {"webhook_url": "http://10.0.0.1/hook"}, "settings.webhook_url"),
    ("email", {**EMAIL, "host": "localhost"}, "settings.host"),
    ("apprise", {"urls": ["json://127.0.0.1:9/hook"]}, "settings.urls[0]"),
]


def _id(case: Monitor | Channel) -> str:
    return " ".join(str(part) for part in case if part)[:60]


def assert_refused(response: httpx.Response, field: str, reason: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field], errors
    assert reason in errors[0]["message"], errors


def settings_for(tmp_path: Path, allow_private: bool, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        pinger_database_url=f"sqlite+aiosqlite:///{tmp_path}/pinger.sqlite3",
        notificator_database_url=f"sqlite+aiosqlite:///{tmp_path}/notificator.sqlite3",
        allow_private_targets=allow_private,
        min_interval_seconds=10,
        outbox_poll_seconds=0.05,
        **overrides,
    )


Start = Callable[..., Awaitable[httpx.AsyncClient]]
MakeUrl = Callable[[], Awaitable[str]]


@pytest.fixture
async def start_pinger(tmp_path: Path) -> AsyncIterator[Start]:
    """Starts the Pinger's API (and, when asked, its probe and evaluator) with a policy."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            allow_private: bool,
            roles: tuple[str, ...] = ("pinger-api",),
            db_url: str | None = None,
            **overrides: Any,
        ) -> httpx.AsyncClient:
            data_dir = tmp_path / uuid.uuid4().hex[:8]
            data_dir.mkdir()
            settings = settings_for(data_dir, allow_private, **overrides)
            if db_url is not None:
                settings = settings.model_copy(update={"pinger_database_url": db_url})
            client, _ = await stack.enter_async_context(
                running_pinger(settings, InProcessBus(), roles)
            )
            return client

        yield start


@pytest.fixture
async def start_notificator(tmp_path: Path) -> AsyncIterator[Start]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(allow_private: bool, **overrides: Any) -> httpx.AsyncClient:
            data_dir = tmp_path / uuid.uuid4().hex[:8]
            data_dir.mkdir()
            bus = InProcessBus()
            component = NotificatorComponent(
                settings_for(data_dir, allow_private, **overrides), bus
            )
            app = build_app("notificator (test)", [component], bus, NotificatorAuth())
            manager = await stack.enter_async_context(
                LifespanManager(app, startup_timeout=30, shutdown_timeout=30)
            )
            return await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=manager.app), base_url="http://notificator"
                )
            )

        yield start


async def create_monitor(client: httpx.AsyncClient, case: Monitor, **extra: Any) -> httpx.Response:
    type_, target, settings, _field = case
    body = {"name": f"corpus {type_}", "type": type_, "target": target, "settings": settings}
    return await client.post("/api/v1/monitors", json={**body, **extra})


async def create_channel(client: httpx.AsyncClient, case: Channel) -> httpx.Response:
    type_, settings, _field = case
    return await client.post(
        "/api/v1/channels", json={"name": f"corpus {type_}", "type": type_, "settings": settings}
    )


def mismatches(
    results: Sequence[tuple[Monitor | Channel, httpx.Response]], reason: str | None
) -> list[str]:
    """The cases that were not answered as expected: 422 naming the field and `reason`, or
    201 when `reason` is None. Every case is tried before the test fails, so a failure lists
    all the holes at once."""
    wrong = []
    for case, response in results:
        field = case[-1]
        try:
            if reason is None:
                assert response.status_code == 201, response.text
            else:
                assert_refused(response, field, reason)
        except (AssertionError, KeyError, ValueError) as exc:
            wrong.append(f"{_id(case)}: {exc}")
    return wrong


# --- Monitors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("allow_private", [False, True], ids=["distributed", "embedded"])
async def test_link_local_monitor_targets_are_refused_under_either_policy(
    start_pinger: Start, allow_private: bool
) -> None:
    client = await start_pinger(allow_private)
    results = [(case, await create_monitor(client, case)) for case in MONITORS_ALWAYS_REFUSED]
    assert mismatches(results, "link-local/cloud metadata; always refused") == []
    assert (await client.get("/api/v1/monitors")).json()["items"] == []


async def test_the_refusal_says_what_the_user_wrote_and_what_it_reaches(
    start_pinger: Start,
) -> None:
    client = await start_pinger(False)
    response = await create_monitor(client, ("http", "http://0251.0376.0251.0376/", {}, ""))
    assert response.json()["errors"][0]["message"].startswith(
        "0251.0376.0251.0376 (169.254.169.254) is link-local/cloud metadata"
    )
    response = await create_monitor(client, ("tcp", "localhost:5432", {}, ""))
    assert response.json()["errors"][0]["message"].startswith("localhost (127.0.0.1) is loopback")


async def test_private_monitor_targets_are_refused_when_private_targets_are_off(
    start_pinger: Start,
) -> None:
    client = await start_pinger(False)
    results = [(case, await create_monitor(client, case)) for case in MONITORS_PRIVATE]
    assert mismatches(results, "addresses are refused here") == []


async def test_private_monitor_targets_are_saved_when_private_targets_are_on(
    start_pinger: Start,
) -> None:
    client = await start_pinger(True)
    results = [(case, await create_monitor(client, case)) for case in MONITORS_PRIVATE]
    assert mismatches(results, None) == []


async def test_the_allow_list_opens_its_networks_and_nothing_else(start_pinger: Start) -> None:
    client = await start_pinger(False, egress_allow_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    opened = [(case, await create_monitor(client, case)) for case in MONITORS_LOOPBACK_V4]
    assert mismatches(opened, None) == []
    closed = [(case, await create_monitor(client, case)) for case in MONITORS_OTHER_PRIVATE]
    assert mismatches(closed, "addresses are refused here") == []
    always = [(case, await create_monitor(client, case)) for case in MONITORS_ALWAYS_REFUSED]
    assert mismatches(always, "always refused") == []


@pytest.mark.parametrize("allow_private", [False, True], ids=["distributed", "embedded"])
async def test_unexpected_schemes_are_refused_for_http_monitors(
    start_pinger: Start, allow_private: bool
) -> None:
    client = await start_pinger(allow_private)
    for url in UNEXPECTED_SCHEMES:
        response = await create_monitor(client, ("http", url, {}, "target"))
        assert_refused(response, "target", "must be an http:// or https:// URL")


async def test_a_monitor_cannot_be_changed_to_a_refused_target(start_pinger: Start) -> None:
    client = await start_pinger(False)
    created = await create_monitor(client, ("http", "https://8.8.8.8/", {}, "target"))
    assert created.status_code == 201, created.text
    url = f"/api/v1/monitors/{created.json()['id']}"
    assert_refused(
        await client.patch(url, json={"target": "http://2852039166/"}),
        "target",
        "always refused",
    )
    assert_refused(
        await client.patch(url, json={"type": "tcp", "target": "localhost:22"}),
        "target",
        "localhost (127.0.0.1) is loopback",
    )
    assert (await client.get(url)).json()["target"] == "https://8.8.8.8/"


# --- Channels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("allow_private", [False, True], ids=["distributed", "embedded"])
async def test_link_local_channel_addresses_are_refused_under_either_policy(
    start_notificator: Start, allow_private: bool
) -> None:
    client = await start_notificator(allow_private)
    results = [(case, await create_channel(client, case)) for case in CHANNELS_ALWAYS_REFUSED]
    assert mismatches(results, "link-local/cloud metadata; always refused") == []
    assert (await client.get("/api/v1/channels")).json()["items"] == []


async def test_private_channel_addresses_follow_the_setting(start_notificator: Start) -> None:
    refusing = await start_notificator(False)
    results = [(case, await create_channel(refusing, case)) for case in CHANNELS_PRIVATE]
    assert mismatches(results, "addresses are refused here") == []
    allowing = await start_notificator(True)
    results = [(case, await create_channel(allowing, case)) for case in CHANNELS_PRIVATE]
    assert mismatches(results, None) == []


async def test_a_refused_channel_address_names_its_host_but_no_secret(
    start_notificator: Start,
) -> None:
    client = await start_notificator(False)
    response = await create_channel(
        client, ("slack", {"webhook_url": "http://10.0.0.1/services/T0/B0/s3cr3t-path"}, "")
    )
    assert_refused(response, "settings.webhook_url", "10.0.0.1 is a private address")
    assert "s3cr3t-path" not in response.text


@pytest.mark.parametrize("allow_private", [False, True], ids=["distributed", "embedded"])
async def test_unexpected_schemes_are_refused_for_webhooks(
    start_notificator: Start, allow_private: bool
) -> None:
    client = await start_notificator(allow_private)
    for url in UNEXPECTED_SCHEMES:
        assert_refused(
            await create_channel(client, _webhook(url)), "settings.url", "URL scheme should be"
        )


async def test_a_channel_cannot_be_changed_to_a_refused_address(
    start_notificator: Start,
) -> None:
    client = await start_notificator(True)
    created = await create_channel(client, _webhook("http://127.0.0.1:9/hook"))
    assert created.status_code == 201, created.text
    url = f"/api/v1/channels/{created.json()['id']}"
    response = await client.patch(url, json={"settings": {"url": "http://[::ffff:a9fe:a9fe]/"}})
    assert_refused(response, "settings.url", "always refused")
    assert (await client.get(url)).json()["settings"]["url"] == "http://127.0.0.1:9/hook"


# --- Redirects, at connect time ---------------------------------------------------------------


@dataclass
class Servers:
    """A server on 127.0.0.1 (allow-listed in these tests) that answers /ok and redirects
    elsewhere, and a second one on 127.0.0.2 (not allow-listed) that counts its requests."""

    port: int
    other_port: int
    other_hits: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application, host: str) -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, host, 0)
        await site.start()
        return int(runner.addresses[0][1])

    other = web.Application()
    state = Servers(0, 0)

    async def count(_request: web.Request) -> web.Response:
        state.other_hits += 1
        return web.Response(text="reached")

    other.router.add_route("*", "/{tail:.*}", count)
    state.other_port = await serve(other, "127.0.0.2")

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def to_metadata(_request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def to_other(_request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.2:{state.other_port}/secret")

    main = web.Application()
    main.router.add_route("*", "/ok", ok)
    main.router.add_route("*", "/to-metadata", to_metadata)
    main.router.add_route("*", "/to-other", to_other)
    state.port = await serve(main, "127.0.0.1")
    try:
        yield state
    finally:
        for runner in runners:
            await runner.cleanup()


ALLOW_127_0_0_1 = (ipaddress.ip_network("127.0.0.1/32"),)


async def checked_once(client: httpx.AsyncClient, target: str) -> dict[str, Any]:
    return await checked(client, ("http", target, {"follow_redirects": True}, "target"))


async def test_a_redirect_to_a_refused_address_fails_the_check_without_connecting(
    start_pinger: Start, servers: Servers
) -> None:
    client = await start_pinger(
        False, roles=("pinger-api", "probe", "evaluator"), egress_allow_networks=ALLOW_127_0_0_1
    )
    # The allow-list opens 127.0.0.1 at connect time too: the plain target is reached.
    reached = await checked_once(client, servers.url("/ok"))
    assert (reached["outcome"], reached["status_code"]) == ("up", 200)

    to_metadata = await checked_once(client, servers.url("/to-metadata"))
    assert to_metadata["outcome"] == "down"
    assert to_metadata["error_kind"] == "blocked"
    assert "169.254.169.254 is link-local/cloud metadata" in to_metadata["error_message"]

    to_other = await checked_once(client, servers.url("/to-other"))
    assert to_other["outcome"] == "down"
    assert to_other["error_kind"] == "blocked"
    assert "127.0.0.2 is loopback" in to_other["error_message"]
    assert servers.other_hits == 0, "the refused address was connected to"


async def test_a_webhook_redirected_to_a_refused_address_is_not_followed(
    start_notificator: Start, servers: Servers
) -> None:
    client = await start_notificator(False, egress_allow_networks=ALLOW_127_0_0_1)

    async def test_send(path: str) -> dict[str, Any]:
        created = await create_channel(client, _webhook(servers.url(path)))
        assert created.status_code == 201, created.text
        response = await client.post(f"/api/v1/channels/{created.json()['id']}/test")
        assert response.status_code == 200, response.text
        return dict(response.json())

    assert (await test_send("/ok"))["ok"] is True
    to_metadata = await test_send("/to-metadata")
    assert to_metadata["ok"] is False
    assert "address refused: 169.254.169.254 is link-local" in to_metadata["error"]
    to_other = await test_send("/to-other")
    assert to_other["ok"] is False
    assert "127.0.0.2 is loopback" in to_other["error"]
    assert servers.other_hits == 0, "the refused address was connected to"


async def checked(client: httpx.AsyncClient, case: Monitor) -> dict[str, Any]:
    """Save a monitor, ask for a check now, and wait for its first result."""
    created = await create_monitor(client, case, timeout_seconds=3)
    assert created.status_code == 201, created.text
    monitor_id = created.json()["id"]
    queued = await client.post(f"/api/v1/monitors/{monitor_id}/check-now")
    assert queued.status_code == 202, queued.text

    async def first_result() -> dict[str, Any] | None:
        items = (await client.get(f"/api/v1/monitors/{monitor_id}/results")).json()["items"]
        return items[0] if items else None

    result: dict[str, Any] = await eventually(first_result, timeout=30)
    return result


async def test_every_check_type_honours_the_allow_list_when_it_connects(
    start_pinger: Start, servers: Servers
) -> None:
    # 127.0.0.1 is allow-listed, 127.0.0.2 is not: the allow-listed address is reached (or
    # fails for a reason of its own: no TLS there, no DNS server, no ICMP permission), the
    # other is refused by the policy before any packet leaves.
    client = await start_pinger(
        False, roles=("pinger-api", "probe", "evaluator"), egress_allow_networks=ALLOW_127_0_0_1
    )
    port = servers.port
    allowed: list[Monitor] = [
        ("tcp", f"127.0.0.1:{port}", {}, "target"),
        ("tls", f"127.0.0.1:{port}", {}, "target"),
        ("icmp", "127.0.0.1", {"count": 1}, "target"),
        ("dns", "example.com", {"resolver": f"127.0.0.1:{free_port()}"}, "settings.resolver"),
    ]
    for case in allowed:
        result = await checked(client, case)
        assert result["error_kind"] != "blocked", (case, result)
    assert (await checked(client, allowed[0]))["outcome"] == "up"

    # A target outside the allow-list cannot be saved; run the checks on it directly, as a
    # probe would after DNS changed under a saved name.
    context = CheckContext(
        allow_private=False,
        allow_networks=ALLOW_127_0_0_1,
    )
    for type_, target, settings, _field in allowed:
        outside = target.replace("127.0.0.1", "127.0.0.2")
        moved = {k: str(v).replace("127.0.0.1", "127.0.0.2") for k, v in settings.items()}
        job = CheckJob(
            monitor_id=uuid.uuid4(),
            check_type=type_,
            target=outside,
            settings=get_check(type_).validate(outside, moved)[1],
            timeout_seconds=3,
            scheduled_at=utcnow(),
            deadline=utcnow() + timedelta(seconds=60),
            region="default",
        )
        ran = await get_check(type_).run(job, context)
        assert (ran.outcome, ran.error_kind) == (Outcome.DOWN, "blocked"), (type_, ran)
        assert "127.0.0.2 is loopback" in (ran.error_message or "")
    assert servers.other_hits == 0


# --- Quota and minimum interval ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def make_pinger_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> MakeUrl:
    """A fresh Pinger database, SQLite then PostgreSQL. Synchronous, so that it may ask for the
    async PostgreSQL fixture by name; the test awaits the URL."""
    if request.param == "postgres":
        make: MakeUrl = request.getfixturevalue("make_pg_database")
        return make

    async def sqlite() -> str:
        return f"sqlite+aiosqlite:///{tmp_path}/quota.sqlite3"

    return sqlite


async def test_the_monitor_quota_holds_even_for_concurrent_creates(
    make_pinger_db_url: MakeUrl, start_pinger: Start
) -> None:
    # The database fixture first, so that it is dropped after the app has stopped.
    db_url = await make_pinger_db_url()
    client = await start_pinger(True, db_url=db_url, max_monitors_per_workspace=3)
    case: Monitor = ("http", "https://8.8.8.8/", {}, "target")
    responses = await asyncio.gather(*(create_monitor(client, case) for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [201, 201, 201, 409, 409, 409]
    refused = next(r for r in responses if r.status_code == 409)
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert "PINGTOWER_MAX_MONITORS_PER_WORKSPACE=3" in refused.json()["detail"]

    other_workspace = {"x-tenant": "globex"}
    response = await client.post(
        "/api/v1/monitors",
        json={"name": "theirs", "target": "https://8.8.8.8/"},
        headers=other_workspace,
    )
    assert response.status_code == 201, "the quota is per workspace"

    first = next(r for r in responses if r.status_code == 201).json()["id"]
    assert (await client.delete(f"/api/v1/monitors/{first}")).status_code == 204
    assert (await create_monitor(client, case)).status_code == 201, "a deleted one frees a slot"
    assert (await create_monitor(client, case)).status_code == 409


async def test_a_quota_of_zero_means_no_quota(start_pinger: Start) -> None:
    client = await start_pinger(True, max_monitors_per_workspace=0)
    case: Monitor = ("http", "https://8.8.8.8/", {}, "target")
    for _ in range(3):
        assert (await create_monitor(client, case)).status_code == 201


async def test_the_minimum_interval_is_enforced_on_create_and_update(
    start_pinger: Start,
) -> None:
    client = await start_pinger(True)  # minimum: 10 s
    case: Monitor = ("http", "https://8.8.8.8/", {}, "target")
    assert_refused(
        await create_monitor(client, case, interval_seconds=9),
        "interval_seconds",
        "must be at least 10",
    )
    created = await create_monitor(client, case, interval_seconds=10)
    assert created.status_code == 201, created.text
    response = await client.patch(
        f"/api/v1/monitors/{created.json()['id']}", json={"interval_seconds": 5}
    )
    assert_refused(response, "interval_seconds", "must be at least 10")


async def test_apply_meets_the_same_quota_and_egress_checks(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    process = Process(
        "pingtower-up",
        pingtower("up", "--port", str(port), "--data-dir", str(data_dir)),
        {"PINGTOWER_MAX_MONITORS_PER_WORKSPACE": "2", "PINGTOWER_MIN_INTERVAL_SECONDS": "10"},
        tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, process)
        path = tmp_path / "monitors.yaml"
        path.write_text(
            """
monitors:
  - {name: Metadata, target: "http://169.254.169.254/latest/meta-data/"}
  - {name: One, target: "http://127.0.0.1:9/"}
  - {name: Two, target: "http://127.0.0.1:9/"}
  - {name: Three, target: "http://127.0.0.1:9/"}
"""
        )
        app = typer.Typer()
        register(app)
        app.command("noop", hidden=True)(lambda: None)  # a group, so the command name is kept
        argv = ["apply", "-f", str(path), "--url", base, "--data-dir", str(data_dir)]
        result = await asyncio.to_thread(CliRunner().invoke, app, argv)
    finally:
        process.stop()
    assert result.exit_code == 1, result.output
    assert (
        "failed 'Metadata': target: 169.254.169.254 is link-local/cloud metadata; always refused"
        in result.output
    )
    assert "failed 'Three': 409 Monitor quota reached" in result.output
    assert "PINGTOWER_MAX_MONITORS_PER_WORKSPACE=2" in result.output


# --- Mass assignment ----------------------------------------------------------------------------

SERVER_SET = {
    "id": str(uuid.uuid4()),
    "tenant": "globex",
    "workspace": "globex",
    "owner": "mallory",
    "created_by": "mallory",
    "created_at": "2000-01-01T00:00:00Z",
}


async def test_server_set_monitor_fields_cannot_be_sent(start_pinger: Start) -> None:
    client = await start_pinger(True)
    case: Monitor = ("http", "https://8.8.8.8/", {}, "target")
    for name, value in {**SERVER_SET, "status": "up", "ping_url": "/ping/x"}.items():
        assert_refused(await create_monitor(client, case, **{name: value}), name, "Extra inputs")
    assert (await client.get("/api/v1/monitors")).json()["items"] == []

    created = await create_monitor(client, case)
    monitor = created.json()
    for name, value in SERVER_SET.items():
        response = await client.patch(f"/api/v1/monitors/{monitor['id']}", json={name: value})
        assert_refused(response, name, "Extra inputs")
    after = (await client.get(f"/api/v1/monitors/{monitor['id']}")).json()
    assert (after["id"], after["created_at"]) == (monitor["id"], monitor["created_at"])
    assert (
        await client.get(f"/api/v1/monitors/{monitor['id']}", headers={"x-tenant": "globex"})
    ).status_code == 404


async def test_server_set_channel_fields_cannot_be_sent(start_notificator: Start) -> None:
    client = await start_notificator(True)
    body = {"name": "hook", "type": "webhook", "settings": {"url": "https://8.8.8.8/hook"}}
    for name, value in SERVER_SET.items():
        response = await client.post("/api/v1/channels", json={**body, name: value})
        assert_refused(response, name, "Extra inputs")
    assert (await client.get("/api/v1/channels")).json()["items"] == []

    created = (await client.post("/api/v1/channels", json=body)).json()
    for name, value in SERVER_SET.items():
        response = await client.patch(f"/api/v1/channels/{created['id']}", json={name: value})
        assert_refused(response, name, "Extra inputs")
    after = (await client.get(f"/api/v1/channels/{created['id']}")).json()
    assert (after["id"], after["created_at"]) == (created["id"], created["created_at"])
    other = await client.get(
        f"/api/v1/channels/{created['id']}", headers={"x-test-tenant": "globex"}
    )
    assert other.status_code == 404
