"""The access sweep over the real embedded app (issue 6, roles and workspaces).

1. Every operation of the OpenAPI has a rule in sweep_routes.RULES (a new route without one
   fails), and every route answers each persona (viewer, editor and admin users, viewer and
   editor API keys, no credentials) as its rule says: no credentials 401, too small a role 403
   (both problem+json), a role that suffices is let through (a read of an unknown id: 404).
2. The admin of another workspace gets 404 for each of the owner's objects, by id and through
   every route that takes that id (statistics and badges included), changes nothing, never
   sees them in a listing or on its live stream, and cannot refer to them in its own objects.
3. The ids the server hands out are random UUIDs (version 4).

Routes left out of the OpenAPI (the UI shell, its assets, the public status page, the docs)
cannot be found this way; the public status page is checked on its own below."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from .sweep_app import Sweep, eventually_ok, open_stream, running_sweep, stream_status
from .sweep_routes import (
    KNOWN_ROLE_DEFECTS,
    KNOWN_WORKSPACE_DEFECTS,
    PERSONAS,
    RULES,
    Rule,
    openapi_operations,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

PROBLEM = "application/problem+json"
PARAMETER = re.compile(r"\{([^}]+)\}")
# Stand-ins for path parameters that name nothing that exists.
# (Ids and heartbeat keys are UUIDs: a fresh one names nothing.)
UNKNOWN_PARAMETERS = {"exit_status": "0"}

# Kinds of object the owner creates, by the name of their id's path parameter: where the owner
# reads one back, and a valid change (an invalid body would answer 422 before the lookup).
KINDS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "monitor_id": ("/api/v1/monitors/{monitor_id}", {"name": "taken-over"}),
    "window_id": ("/api/v1/maintenance-windows/{window_id}", {}),
    "channel_id": ("/api/v1/channels/{channel_id}", {"name": "taken-over"}),
    "rule_id": ("/api/v1/rules/{rule_id}", {"name": "taken-over"}),
    "silence_id": ("/api/v1/silences/{silence_id}", {"comment": "taken-over"}),
    "slo_id": ("/api/v1/stats/slos/{slo_id}", {"name": "taken-over"}),
    "user_id": ("/api/v1/users/{user_id}", {"role": "admin"}),
    # Keys have no read-by-id route: the owner's listing shows whether one was revoked.
    "key_id": (None, {}),
}
# alert_id and notification_id: an alert needs a monitor that really goes down; their routes
# are still swept for roles (with unknown ids) and their listings for leaks below.

# Route x persona -> "expected: got", filled in as the sweep goes, printed when one fails.
OBSERVED: dict[tuple[str, str], dict[str, str]] = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sweep(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sweep]:
    data_dir: Path = tmp_path_factory.mktemp("access-sweep")
    async with running_sweep(data_dir) as running:
        yield running


def parameters(path: str) -> list[str]:
    return PARAMETER.findall(path)


def with_unknown_ids(path: str) -> str:
    return PARAMETER.sub(lambda m: UNKNOWN_PARAMETERS.get(m.group(1), str(uuid.uuid4())), path)


def format_table() -> str:
    width = max((len(f"{m} {p}") for m, p in OBSERVED), default=10)
    header = f"{'route':<{width}}  " + "  ".join(f"{p:<18}" for p in PERSONAS)
    lines = [header, "-" * len(header)]
    for (method, path), row in sorted(OBSERVED.items(), key=lambda item: item[0][::-1]):
        cells = "  ".join(f"{row.get(p, '-'):<18}" for p in PERSONAS)
        lines.append(f"{method + ' ' + path:<{width}}  {cells}")
    return "route x persona (expected: got)\n" + "\n".join(lines)


def is_problem(response: httpx.Response, status: int) -> bool:
    if not response.headers.get("content-type", "").startswith(PROBLEM) or not response.content:
        return False
    return response.status_code == status and response.json().get("status") == status


async def answer(
    sweep: Sweep, method: str, path: str, rule: Rule, persona: str
) -> tuple[int, bool]:
    """(status, whether it was a problem document of that status) for the persona."""
    token = sweep.tokens[persona]
    if rule.streaming and rule.expected(persona) == "allowed":
        return await stream_status(sweep.app, path, token), False
    body: dict[str, Any] | None = (
        {} if method in {"POST", "PUT", "PATCH"} and rule.needs is not None else None
    )
    response = await sweep.call(method, path, token, body)
    return response.status_code, is_problem(response, response.status_code)


def verdict(method: str, expected: str, status: int, problem: bool) -> bool:
    if expected in {"401", "403"}:
        return status == int(expected) and problem
    if expected == "public" and method not in {"GET", "HEAD"}:
        return status not in {401, 403} and status < 500
    if method in {"GET", "HEAD"}:
        # Reading with an id that does not exist is a 404, never a refusal.
        return 200 <= status < 300 or status == 404
    return status not in {401, 403} and status < 500


async def test_every_openapi_operation_has_an_access_rule(sweep: Sweep) -> None:
    published = openapi_operations(sweep.spec)
    unruled = sorted(published - RULES.keys())
    stale = sorted(RULES.keys() - published)
    assert (unruled, stale) == ([], []), (
        "every operation needs a rule in tests/integration/security/sweep_routes.py\n"
        f"routes without a rule: {unruled}\nrules for routes that no longer exist: {stale}"
    )


def role_cases() -> list[Any]:
    cases = []
    for key in sorted(RULES, key=lambda k: k[::-1]):
        marks = []
        if key in KNOWN_ROLE_DEFECTS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_ROLE_DEFECTS[key]))
        cases.append(pytest.param(*key, marks=marks, id=f"{key[0]} {key[1]}"))
    return cases


async def observe(sweep: Sweep, method: str, path: str) -> list[str]:
    """Ask the route as each persona, record the row of the table; the personas it failed."""
    rule = RULES[(method, path)]
    target = with_unknown_ids(path)
    # Public routes answer everyone alike; the anonymous caller shows they need no login.
    # (Logout would also end the personas' sessions, which the sweep still needs.)
    personas = ("anonymous",) if rule.needs is None else PERSONAS
    row: dict[str, str] = {}
    wrong = []
    for persona in personas:
        expected = rule.expected(persona)
        status, problem = await answer(sweep, method, target, rule, persona)
        # (A HEAD answer has no body, so no problem document either.)
        note = "" if problem or status < 400 or method == "HEAD" else " (no problem+json)"
        row[persona] = f"{expected}: {status}{note}"
        if not verdict(method, expected, status, problem):
            wrong.append(persona)
    OBSERVED[(method, path)] = row
    return wrong


@pytest.mark.parametrize(("method", "path"), role_cases())
async def test_route_answers_each_role_as_its_rule_says(
    sweep: Sweep, method: str, path: str
) -> None:
    wrong = await observe(sweep, method, path)
    if wrong:
        # The whole table, for the failure message: the routes not swept yet are asked now.
        for key in RULES.keys() - OBSERVED.keys():
            await observe(sweep, *key)
    assert not wrong, f"{method} {path} is wrong for {wrong}\n{format_table()}"


def workspace_cases() -> list[Any]:
    cases = []
    for key in sorted(RULES, key=lambda k: k[::-1]):
        names = parameters(key[1])
        if len(names) != 1 or names[0] not in KINDS:
            continue
        marks = []
        if key in KNOWN_WORKSPACE_DEFECTS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_WORKSPACE_DEFECTS[key]))
        cases.append(pytest.param(*key, marks=marks, id=f"{key[0]} {key[1]}"))
    return cases


async def owner_view(sweep: Sweep, kind: str) -> Any:
    """What the owner sees of its object of that kind, to show the outsider changed nothing."""
    read_path, _ = KINDS[kind]
    object_id = sweep.owned[kind]["id"]
    if read_path is None:
        listing = await sweep.as_owner("GET", "/api/v1/api-keys")
        assert listing.status_code == 200, listing.text
        return [key for key in listing.json()["items"] if key["id"] == object_id]
    response = await sweep.as_owner("GET", read_path.replace("{" + kind + "}", object_id))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("credential", ["session", "api-key"])
@pytest.mark.parametrize(("method", "path"), workspace_cases())
async def test_another_workspace_gets_404_for_the_owners_object(
    sweep: Sweep, method: str, path: str, credential: str
) -> None:
    (kind,) = parameters(path)
    token = sweep.outsider if credential == "session" else sweep.outsider_key
    before = await owner_view(sweep, kind)
    body = KINDS[kind][1] if method in {"PATCH", "PUT"} else None
    response = await sweep.call(
        method, path.replace("{" + kind + "}", sweep.owned[kind]["id"]), token, body
    )
    assert is_problem(response, 404), (
        f"the outsider's {method} {path} ({credential}) on the owner's {kind} answered "
        f"{response.status_code}: {response.text}"
    )
    assert await owner_view(sweep, kind) == before, "the outsider's request changed the object"


def listing_cases() -> list[Any]:
    return [
        pytest.param(path, id=path)
        for (method, path), rule in sorted(RULES.items())
        if method == "GET"
        and rule.needs is not None
        and not rule.streaming
        and not parameters(path)
    ]


@pytest.mark.parametrize("path", listing_cases())
async def test_another_workspace_never_sees_the_owners_objects_in_a_listing(
    sweep: Sweep, path: str
) -> None:
    response = await sweep.call("GET", path, sweep.outsider)
    assert response.status_code == 200, response.text
    for kind, owned in sweep.owned.items():
        assert owned["id"] not in response.text, f"{path} shows the owner's {kind}"
    assert "owner-" not in response.text, f"{path} shows an owner's object by name"
    body = response.json()
    if isinstance(body, dict) and "items" in body:
        if path == "/api/v1/users":
            # The outsider's workspace holds exactly one account: its own.
            assert [user["username"] for user in body["items"]] == ["outsider-admin"]
        elif path == "/api/v1/api-keys":
            assert [key["name"] for key in body["items"]] == ["outsider-automation"]
        else:
            assert body["items"] == [], f"{path} is not empty for a new workspace"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/api/v1/monitors", "monitor_id"),
        ("/api/v1/maintenance-windows", "window_id"),
        ("/api/v1/channels", "channel_id"),
        ("/api/v1/rules", "rule_id"),
        ("/api/v1/silences", "silence_id"),
        ("/api/v1/stats/slos", "slo_id"),
        ("/api/v1/api-keys", "key_id"),
        ("/api/v1/users", "user_id"),
    ],
)
async def test_the_owner_sees_its_objects_in_its_listings(
    sweep: Sweep, path: str, kind: str
) -> None:
    # The other side of the listing test: the objects exist and are listed, for their owner.
    response = await sweep.as_owner("GET", path)
    assert response.status_code == 200, response.text
    listed = [item.get("id", item.get("slo_id")) for item in response.json()["items"]]
    assert sweep.owned[kind]["id"] in listed


async def test_ids_handed_out_are_random_uuid4(sweep: Sweep) -> None:
    listing = await sweep.as_owner("GET", "/api/v1/users")
    ids = {kind: owned["id"] for kind, owned in sweep.owned.items()}
    ids |= {f"user {u['username']}": u["id"] for u in listing.json()["items"]}
    assert len(ids) >= len(KINDS) + 3
    versions = {name: uuid.UUID(value).version for name, value in ids.items()}
    assert all(version == 4 for version in versions.values()), versions


async def test_the_live_stream_carries_only_the_callers_workspace(sweep: Sweep) -> None:
    path = "/api/v1/events/stream"
    async with (
        open_stream(sweep.app, path, sweep.outsider) as outsider,
        open_stream(sweep.app, path, sweep.tokens["viewer"]) as owner,
    ):
        assert (outsider.status, owner.status) == (200, 200)
        await outsider.read_until(": connected")
        await owner.read_until(": connected")
        monitor = await sweep.as_owner(
            "POST",
            "/api/v1/monitors",
            {"name": "owner-ephemeral", "paused": True, "target": "http://127.0.0.1:9/"},
        )
        assert monitor.status_code == 201, monitor.text
        monitor_id = monitor.json()["id"]
        deleted = await sweep.as_owner("DELETE", f"/api/v1/monitors/{monitor_id}")
        assert deleted.status_code == 204, deleted.text
        # The owner's viewer is told; by then the outsider has been told whatever it would be.
        assert monitor_id in await owner.read_until(monitor_id)
        leaked = outsider.received()
        assert monitor_id not in leaked, leaked
        assert "monitor.deleted" not in leaked, leaked


async def test_the_public_status_page_shows_no_private_monitor(sweep: Sweep) -> None:
    response = await sweep.call("GET", "/status/default/summary.json", None)
    assert response.status_code == 200, response.text
    assert response.json()["monitors"] == []
    assert sweep.owned["monitor_id"]["id"] not in response.text
    assert "owner-site" not in response.text


async def test_an_editor_cannot_publish_a_monitor_on_the_public_status_page(
    sweep: Sweep,
) -> None:
    response = await sweep.call(
        "POST",
        "/api/v1/monitors",
        sweep.tokens["editor"],
        {
            "name": "editor-published",
            "paused": True,
            "target": "http://127.0.0.1:9/",
            "tags": ["public"],
        },
    )
    assert response.status_code == 201, response.text
    monitor_id = response.json()["id"]
    flagged = await sweep.call(
        "PATCH", f"/api/v1/monitors/{monitor_id}", sweep.tokens["editor"], {"public": True}
    )
    assert flagged.status_code == 403, flagged.text
    created_public = await sweep.call(
        "POST",
        "/api/v1/monitors",
        sweep.tokens["editor"],
        {"name": "editor-flagged", "paused": True, "target": "http://127.0.0.1:9/", "public": True},
    )
    assert created_public.status_code == 403, created_public.text
    try:
        # Once the statistics know the monitor, its creation event has reached every consumer.
        await eventually_ok(sweep, f"/api/v1/stats/monitors/{monitor_id}/uptime")
        page = await sweep.call("GET", "/status/default/summary.json", None)
        assert "editor-published" not in page.text

        # The admin may publish it; the page then shows it.
        published = await sweep.as_owner(
            "PATCH", f"/api/v1/monitors/{monitor_id}", {"public": True}
        )
        assert published.status_code == 200, published.text
        assert published.json()["public"] is True
        deadline = asyncio.get_running_loop().time() + 10
        while "editor-published" not in page.text:
            assert asyncio.get_running_loop().time() < deadline, page.text
            await asyncio.sleep(0.05)
            page = await sweep.call("GET", "/status/default/summary.json", None)
    finally:
        await sweep.as_owner("DELETE", f"/api/v1/monitors/{monitor_id}")


def reference_cases() -> list[Any]:
    """Creations in the outsider's workspace that name one of the owner's objects."""

    return [
        pytest.param("/api/v1/rules", "channel", id="rule naming the owner's channel"),
        pytest.param("/api/v1/rules", "monitor", id="rule naming the owner's monitor"),
        pytest.param("/api/v1/silences", "monitor", id="silence naming the owner's monitor"),
        pytest.param(
            "/api/v1/maintenance-windows", "monitor", id="window over the owner's monitor"
        ),
        pytest.param("/api/v1/stats/slos", "monitor", id="SLO of the owner's monitor"),
        pytest.param("/api/v1/monitors", "monitor", id="monitor under the owner's monitor"),
    ]


@pytest.mark.parametrize(("path", "names"), reference_cases())
async def test_another_workspace_cannot_refer_to_the_owners_objects(
    sweep: Sweep, path: str, names: str
) -> None:
    monitor_id = sweep.owned["monitor_id"]["id"]
    own_channel = await sweep.call(
        "POST",
        "/api/v1/channels",
        sweep.outsider,
        {"name": "outsider-hook", "type": "webhook", "settings": {"url": "http://127.0.0.1:9/"}},
    )
    assert own_channel.status_code == 201, own_channel.text
    channel_id = sweep.owned["channel_id"]["id"] if names == "channel" else own_channel.json()["id"]
    now = datetime.now(UTC)
    bodies: dict[str, dict[str, Any]] = {
        "/api/v1/rules": {
            "name": "outsider-rule",
            "events": ["down"],
            "channel_ids": [channel_id],
            "monitor_ids": [monitor_id] if names == "monitor" else [],
        },
        "/api/v1/silences": {
            "monitor_ids": [monitor_id],
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        },
        "/api/v1/maintenance-windows": {
            "name": "outsider-window",
            "kind": "once",
            "monitor_ids": [monitor_id],
            "starts_at": (now + timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=1, hours=1)).isoformat(),
        },
        "/api/v1/stats/slos": {"name": "outsider-slo", "monitor_id": monitor_id, "objective": 0.99},
        "/api/v1/monitors": {
            "name": "outsider-child",
            "paused": True,
            "target": "http://127.0.0.1:9/",
            "parent_id": monitor_id,
        },
    }
    response = await sweep.call("POST", path, sweep.outsider, bodies[path])
    try:
        # As if the object did not exist: the same answer as for an id nobody has.
        assert response.status_code in {404, 422}, response.text
        assert is_problem(response, response.status_code)
    finally:
        # Whatever was created goes, so the outsider's workspace stays empty for other tests.
        if response.status_code == 201:
            made = response.json()
            made_id = made.get("id", made.get("slo_id"))
            await sweep.call("DELETE", f"{path}/{made_id}", sweep.outsider)
        await sweep.call("DELETE", f"/api/v1/channels/{own_channel.json()['id']}", sweep.outsider)
