"""How `build` wires the Pinger's roles."""

from __future__ import annotations

import pytest

from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.settings import Settings
from pingtower.pinger.checks.base import REGISTRY, load_builtin_checks
from pingtower.pinger.evaluator.evaluator import Evaluator
from pingtower.pinger.probe.probe import Probe
from pingtower.pinger.scheduler.scheduler import Scheduler
from pingtower.pinger.service import PingerApi, build
from pingtower.pinger.store.database import PingerDatabase


def settings(tmp_path: object) -> Settings:
    return Settings(data_dir=tmp_path)  # type: ignore[arg-type]


def test_a_probe_alone_has_no_database(tmp_path: object) -> None:
    components = build(settings(tmp_path), InProcessBus(), ["probe"])
    assert [type(c) for c in components] == [Probe]


def test_all_roles_share_one_database(tmp_path: object) -> None:
    components = build(
        settings(tmp_path), InProcessBus(), ["pinger-api", "scheduler", "probe", "evaluator"]
    )
    assert [type(c) for c in components] == [PingerDatabase, PingerApi, Scheduler, Evaluator, Probe]
    database = components[0]
    assert isinstance(database, PingerDatabase)
    scheduler, evaluator = components[2], components[3]
    assert isinstance(scheduler, Scheduler)
    assert isinstance(evaluator, Evaluator)
    assert scheduler.db is database
    assert evaluator.db is database


def test_an_unknown_role_is_refused(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="unknown pinger roles: pinger"):
        build(settings(tmp_path), InProcessBus(), ["pinger"])


def test_every_builtin_check_type_is_registered() -> None:
    load_builtin_checks()
    assert {"http", "tcp", "dns", "tls", "icmp", "heartbeat"} <= set(REGISTRY)
