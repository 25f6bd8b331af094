"""`pingtower apply --prune` against a real `pingtower up` whose workspace is at its monitor
quota: a file that replaces one monitor with another goes through in one apply, because the
dropped monitor is deleted before the new one is created."""

from __future__ import annotations

import pytest

# `system` is that module's fixture: a `pingtower up` process; its environment is this test
# process's, which `at_quota` sets first.
from tests.integration.pinger.test_monitors_as_code import System, system  # noqa: F401

QUOTA = 2

BEFORE = """
monitors:
  - {name: Router, type: tcp, target: "127.0.0.1:9"}
  - {name: Old site, target: "http://127.0.0.1:9/old", parent: Router}
"""

AFTER = """
monitors:
  - {name: Router, type: tcp, target: "127.0.0.1:9"}
  - {name: New site, target: "http://127.0.0.1:9/new", parent: Router}
"""


@pytest.fixture
def at_quota(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("PINGTOWER_MAX_MONITORS_PER_WORKSPACE", str(QUOTA))
    return QUOTA


async def test_a_workspace_at_its_quota_swaps_a_monitor_in_one_apply(
    at_quota: int,
    system: System,  # noqa: F811 - the imported fixture, started after `at_quota`
) -> None:
    first = await system.cli("apply", "-f", system.file(BEFORE, "before.yaml"))
    assert first.exit_code == 0, first.output
    assert len(await system.monitors()) == at_quota
    third = BEFORE + '  - {name: Third, type: tcp, target: "127.0.0.1:9"}\n'
    refused = await system.cli("apply", "-f", system.file(third, "third.yaml"))
    assert refused.exit_code != 0, "the quota holds: a third monitor is refused"
    assert "PINGTOWER_MAX_MONITORS_PER_WORKSPACE=2" in refused.output

    swapped = await system.cli("apply", "-f", system.file(AFTER, "after.yaml"), "--prune")

    assert swapped.exit_code == 0, swapped.output
    monitors = await system.monitors()
    assert sorted(monitors) == ["New site", "Router"]
    assert monitors["New site"]["parent_id"] == monitors["Router"]["id"]
    assert monitors["New site"]["target"] == "http://127.0.0.1:9/new"
