"""A monitor's `slo` declared in a monitors file, against the real embedded process: applied,
shown in the dry run's diff, exported and applied back unchanged, and kept by the Statistics
service as an SLO that only the monitor's settings change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import yaml

from tests.integration.pinger.test_monitors_as_code import System, system

__all__ = ["system"]  # the fixture, shared with test_monitors_as_code

MONITORS = """
monitors:
  - name: Shop
    target: http://127.0.0.1:9/
    slo: {objective: 0.999}
  - name: Blog
    target: http://127.0.0.1:9/blog
"""


async def stats_slos(system: System, wanted: Callable[[list[dict[str, Any]]], bool]) -> Any:
    """The workspace's SLOs once `wanted(items)` holds (the Statistics service learns of the
    monitors from their events); the last answer after a bounded wait."""
    token = (system.data_dir / "admin-token").read_text().strip()
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        while True:
            response = await client.get(f"{system.url}/api/v1/stats/slos")
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            if wanted(items) or time.monotonic() > deadline:
                return items
            await asyncio.sleep(0.1)


async def test_an_slo_in_the_file_is_applied_diffed_exported_and_kept_by_statistics(
    system: System,
) -> None:
    path = system.file(MONITORS)
    applied = await system.cli("apply", "-f", path)
    assert applied.exit_code == 0, applied.output
    monitors = await system.monitors()
    assert monitors["Shop"]["slo"] == {"objective": 0.999, "window_days": 30}
    assert monitors["Blog"]["slo"] is None
    again = await system.cli("apply", "-f", path)
    assert "0 to create, 0 to update, 0 to delete, 2 unchanged." in again.output, again.output

    (slo,) = await stats_slos(system, lambda items: len(items) == 1)
    assert (slo["name"], slo["monitor_id"], slo["objective"]) == (
        "Shop",
        monitors["Shop"]["id"],
        0.999,
    )
    token = (system.data_dir / "admin-token").read_text().strip()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        refused = await client.delete(f"{system.url}/api/v1/stats/slos/{slo['slo_id']}")
    assert refused.status_code == 409
    assert "monitor 'Shop'" in refused.json()["detail"]

    document = yaml.safe_load(MONITORS)
    document["monitors"][0]["slo"] = {"objective": 0.99, "window_days": 7}
    document["monitors"][1]["slo"] = {"objective": 0.95}
    changed = system.file(yaml.safe_dump(document), "changed.yaml")
    dry = await system.cli("apply", "-f", changed, "--dry-run")
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert "    slo.objective: 0.999 -> 0.99" in lines
    assert "    slo.window_days: 30 -> 7" in lines
    assert '    slo: null -> {"objective": 0.95, "window_days": 30}' in lines
    assert (await system.monitors())["Blog"]["slo"] is None, "a dry run changes nothing"

    assert (await system.cli("apply", "-f", changed)).exit_code == 0
    exported = system.workdir / "exported.yaml"
    assert (await system.cli("export", "-o", str(exported))).exit_code == 0
    entries = {e["name"]: e for e in yaml.safe_load(exported.read_text())["monitors"]}
    assert entries["Shop"]["slo"] == {"objective": 0.99, "window_days": 7}
    assert entries["Blog"]["slo"] == {"objective": 0.95, "window_days": 30}
    back = await system.cli("apply", "-f", str(exported))
    assert "0 to create, 0 to update, 0 to delete, 2 unchanged." in back.output, back.output

    def both_changed(items: list[dict[str, Any]]) -> bool:
        return sorted((s["name"], s["objective"], s["window_days"]) for s in items) == [
            ("Blog", 0.95, 30),
            ("Shop", 0.99, 7),
        ]

    assert both_changed(await stats_slos(system, both_changed))

    document["monitors"][0]["slo"] = None  # written out: no objective any more
    removed = system.file(yaml.safe_dump(document), "removed.yaml")
    assert (await system.cli("apply", "-f", removed)).exit_code == 0
    assert (await system.monitors())["Shop"]["slo"] is None
    remaining = await stats_slos(system, lambda items: [s["name"] for s in items] == ["Blog"])
    assert [s["name"] for s in remaining] == ["Blog"]
