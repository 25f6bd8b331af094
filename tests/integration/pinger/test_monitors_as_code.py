"""`pingtower apply` and `pingtower export` against the real embedded process (`pingtower up`)
over HTTP: create, re-apply without change, dry run, prune, export round trip, API errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml
from typer.testing import CliRunner, Result

from pingtower.pinger.ascode.cli import register
from tests.e2e.harness import Process, free_port, pingtower, wait_ready

MONITORS = """
monitors:
  - name: Router
    type: tcp
    target: 127.0.0.1:9
    tags: [network]
  - name: Home
    target: http://127.0.0.1:9/
    parent: Router
    interval_seconds: 60
    settings:
      bearer_token: s3cret
      headers: {Accept: text/html}
  - name: Nightly backup
    type: heartbeat
    interval_seconds: 86400
    settings: {grace_seconds: 3600}
"""


@dataclass
class System:
    url: str
    data_dir: Path
    workdir: Path

    async def cli(self, *args: str, token: str | None = None) -> Result:
        """The commands as the `pingtower` CLI registers them, run off the event loop (they
        block on HTTP). The token comes from the data dir unless given."""
        app = typer.Typer()
        register(app)
        app.command("noop", hidden=True)(lambda: None)  # a group, so the command name is kept
        auth = ["--token", token] if token else ["--data-dir", str(self.data_dir)]
        argv = [*args, "--url", self.url, *auth]
        return await asyncio.to_thread(CliRunner().invoke, app, argv)

    async def monitors(self) -> dict[str, dict[str, Any]]:
        token = (self.data_dir / "admin-token").read_text().strip()
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
            response = await client.get(f"{self.url}/api/v1/monitors", params={"limit": 500})
        assert response.status_code == 200, response.text
        return {m["name"]: m for m in response.json()["items"]}

    def file(self, text: str, name: str = "monitors.yaml") -> str:
        path = self.workdir / name
        path.write_text(text)
        return str(path)


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    port = free_port()
    data_dir = tmp_path / "data"
    process = Process(
        "pingtower-up",
        pingtower("up", "--port", str(port), "--data-dir", str(data_dir)),
        {"PINGTOWER_MIN_INTERVAL_SECONDS": "10"},
        tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, process)
        yield System(base, data_dir, tmp_path)
    finally:
        process.stop()


async def test_apply_creates_then_reapplying_changes_nothing_and_export_round_trips(
    system: System,
) -> None:
    path = system.file(MONITORS)
    dry = await system.cli("apply", "-f", path, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "+ create 'Router' (tcp 127.0.0.1:9)" in dry.output
    assert "3 to create, 0 to update, 0 to delete, 0 unchanged." in dry.output
    assert await system.monitors() == {}, "a dry run changes nothing"

    applied = await system.cli("apply", "-f", path)
    assert applied.exit_code == 0, applied.output
    monitors = await system.monitors()
    assert sorted(monitors) == ["Home", "Nightly backup", "Router"]
    assert monitors["Home"]["parent_id"] == monitors["Router"]["id"]
    assert monitors["Home"]["settings"]["bearer_token"] == "<set>"

    again = await system.cli("apply", "-f", path)
    assert again.exit_code == 0, again.output
    assert "0 to create, 0 to update, 0 to delete, 3 unchanged." in again.output

    exported = system.workdir / "exported.yaml"
    export = await system.cli("export", "-o", str(exported))
    assert export.exit_code == 0, export.output
    document = yaml.safe_load(exported.read_text())
    home = next(e for e in document["monitors"] if e["name"] == "Home")
    assert home["parent"] == "Router"
    assert home["settings"]["bearer_token"] == "<set>", "an export holds no secret"
    back = await system.cli("apply", "-f", str(exported))
    assert "0 to create, 0 to update, 0 to delete, 3 unchanged." in back.output
    after = await system.monitors()
    assert {n: m["updated_at"] for n, m in after.items()} == {
        n: m["updated_at"] for n, m in monitors.items()
    }


async def test_a_pruning_dry_run_shows_the_diff_and_the_apply_carries_it_out(
    system: System,
) -> None:
    token = (system.data_dir / "admin-token").read_text().strip()
    assert (await system.cli("apply", "-f", system.file(MONITORS), token=token)).exit_code == 0
    document = yaml.safe_load(MONITORS)
    document["monitors"] = document["monitors"][:2]
    document["monitors"][1]["interval_seconds"] = 120
    document["monitors"][1]["settings"]["headers"] = {"Accept": "application/json"}
    path = system.file(yaml.safe_dump(document), "changed.yaml")

    dry = await system.cli("apply", "-f", path, "--prune", "--dry-run", token=token)
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert "~ update 'Home'" in lines
    assert "    interval_seconds: 60 -> 120" in lines
    assert '    settings.headers.Accept: "text/html" -> "application/json"' in lines
    assert "- delete 'Nightly backup'" in lines
    assert "Nightly backup" in await system.monitors()

    applied = await system.cli("apply", "-f", path, "--prune", token=token)
    assert applied.exit_code == 0, applied.output
    monitors = await system.monitors()
    assert sorted(monitors) == ["Home", "Router"]
    assert monitors["Home"]["interval_seconds"] == 120
    assert monitors["Home"]["settings"]["bearer_token"] == "<set>", "the secret is kept"


async def test_the_apis_validation_errors_are_shown_per_monitor_with_the_field(
    system: System,
) -> None:
    path = system.file(
        """
monitors:
  - {name: Fine, target: "http://127.0.0.1:9/"}
  - {name: Too often, target: "http://127.0.0.1:9/", interval_seconds: 5}
  - {name: Bad codes, target: "http://127.0.0.1:9/", settings: {expected_status: [2xx]}}
"""
    )
    result = await system.cli("apply", "-f", path)
    assert result.exit_code == 1
    assert "failed 'Too often': interval_seconds: must be at least 10" in result.output
    assert "failed 'Bad codes': settings.expected_status:" in result.output
    assert sorted(await system.monitors()) == ["Fine"], "the valid monitor is still applied"


async def test_a_wrong_token_is_refused_and_the_command_says_so(system: System) -> None:
    result = await system.cli("export", token="wrong")
    assert result.exit_code == 1
    assert "401" in result.output
