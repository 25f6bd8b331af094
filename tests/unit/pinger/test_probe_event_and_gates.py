"""The probe's own pieces without a network: the `check.completed` it builds without validating
(equal to the validated one, field for field and byte for byte), and the gates that bound its
checks overall and per host."""

from __future__ import annotations

import asyncio
import pickle
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import PrivateAttr

from pingtower.common.events import (
    CheckCompleted,
    CheckJob,
    Contract,
    Envelope,
    Outcome,
    new_event_id,
    trusted,
)
from pingtower.common.messaging.inprocess import InProcessBus
from pingtower.common.messaging.rabbitmq import RabbitMQBus
from pingtower.common.settings import Settings
from pingtower.pinger.checks.base import CheckResult
from pingtower.pinger.probe.probe import Gate, HostLimiter, Probe, completed_event

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
JOB = CheckJob(
    monitor_id=uuid.uuid4(),
    check_type="http",
    target="http://example.com/",
    timeout_seconds=10,
    scheduled_at=NOW,
    deadline=NOW + timedelta(seconds=60),
    region="eu",
)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
# A float field may be given an int (mypy lets a check do it); validation makes it a float.
NUMBER = FINITE | st.integers(-(10**6), 10**6)

# Every outcome and error kind the checks report, with the fields each comes with.
RESULTS = [
    CheckResult(
        Outcome.UP,
        latency_ms=12.5,
        status_code=200,
        size_bytes=612,
        phases_ms={"dns": 0.0, "connect": 0.2, "first_byte": 3.1, "total": 12.5},
    ),
    CheckResult(
        Outcome.UP,
        latency_ms=40.0,
        status_code=204,
        size_bytes=0,
        phases_ms={"dns": 1.0, "connect": 2.0, "tls": 9.5, "first_byte": 20.0, "total": 40.0},
        cert_expires_at=datetime(2027, 3, 1, tzinfo=UTC),
    ),
    CheckResult(
        Outcome.DEGRADED,
        latency_ms=812.0,
        error_kind="slow",
        error_message="812 ms is above 500 ms",
        status_code=200,
        size_bytes=2,
        phases_ms={"total": 812.0},
    ),
    CheckResult(
        Outcome.DEGRADED,
        latency_ms=3,  # an int where a float is typed
        error_kind="packet_loss",
        error_message="25% packet loss",
        phases_ms={"loss_percent": 25, "rtt_avg": 3.0},
    ),
    CheckResult(Outcome.UP, latency_ms=1.0, error_kind="stale", error_message="ignored when up"),
    *(
        CheckResult.failed(kind, f"{kind} failed", latency_ms=5.5, phases_ms={"total": 5.5})
        for kind in ("dns", "connect", "tls", "timeout", "protocol", "redirect", "blocked")
    ),
    CheckResult.failed(
        "http_status", "status 500 is not one of 200-299", status_code=500, size_bytes=21
    ),
    CheckResult.failed("assertion", "keyword 'ok' missing in the body", status_code=200),
    CheckResult.failed("size", "response larger than 1 bytes", status_code=200, size_bytes=2),
    CheckResult.failed("config", "settings.method: bad"),
    CheckResult.failed("internal", "RuntimeError: " + "x" * 600),
    CheckResult(Outcome.DOWN),
]


def validated(result: CheckResult, started_at: datetime, finished_at: datetime) -> CheckCompleted:
    """What the probe built before: the validated contract."""
    up = result.outcome == Outcome.UP
    return CheckCompleted(
        check_id=JOB.job_id,
        monitor_id=JOB.monitor_id,
        region=JOB.region,
        scheduled_at=JOB.scheduled_at,
        started_at=started_at,
        finished_at=finished_at,
        outcome=result.outcome,
        latency_ms=result.latency_ms,
        error_kind=None if up else result.error_kind,
        error_message=None if up else result.error_message,
        status_code=result.status_code,
        size_bytes=result.size_bytes,
        phases_ms=result.phases_ms,
        cert_expires_at=result.cert_expires_at,
    )


def assert_same_event(built: CheckCompleted, expected: CheckCompleted) -> None:
    assert built == expected
    assert built.model_dump_json() == expected.model_dump_json()
    assert built.model_dump() == expected.model_dump()
    assert built.model_fields_set == expected.model_fields_set
    for name in CheckCompleted.model_fields:
        assert type(getattr(built, name)) is type(getattr(expected, name)), name
    wrapped = Envelope.wrap(built, producer="p", tenant="t")
    assert Envelope.from_bytes(wrapped.to_bytes()).parse() == expected


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: f"{r.outcome}-{r.error_kind}")
def test_the_unvalidated_check_completed_equals_the_validated_one(result: CheckResult) -> None:
    finished_at = NOW + timedelta(milliseconds=15)
    built = completed_event(JOB, result, NOW, finished_at)
    assert_same_event(built, validated(result, NOW, finished_at))


@given(
    outcome=st.sampled_from(Outcome),
    latency=st.none() | NUMBER,
    kind=st.none() | st.text(max_size=20),
    message=st.none() | st.text(max_size=50),
    status=st.none() | st.integers(100, 599),
    size=st.none() | st.integers(0, 10**9),
    phases=st.dictionaries(st.text(max_size=10), NUMBER, max_size=5),
    expiry=st.none() | st.datetimes(timezones=st.just(UTC)),
)
def test_any_result_makes_the_event_validation_would_make(
    outcome: Outcome,
    latency: float | None,
    kind: str | None,
    message: str | None,
    status: int | None,
    size: int | None,
    phases: dict[str, float],
    expiry: datetime | None,
) -> None:
    result = CheckResult(outcome, latency, kind, message, status, size, phases, expiry)
    expected = validated(result, NOW, NOW)
    assert_same_event(completed_event(JOB, result, NOW, NOW), expected)


def test_a_trusted_event_is_frozen_and_copies_as_the_validated_one_does() -> None:
    values: dict[str, Any] = {"monitor_id": uuid.uuid4()}
    built = trusted(CheckCompleted, validated(RESULTS[0], NOW, NOW).model_dump())
    with pytest.raises(ValueError, match="frozen"):
        built.region = "us"  # type: ignore[misc]
    changed = built.model_copy(update=values)
    assert changed.monitor_id == values["monitor_id"]
    assert built.monitor_id == JOB.monitor_id  # the copy changed, not the original
    assert built.model_fields_set == set(CheckCompleted.model_fields)


async def test_a_gate_lets_limit_holders_in_and_the_others_in_arrival_order() -> None:
    gate = Gate(2)
    assert gate.try_enter()
    assert gate.try_enter()
    assert not gate.try_enter()
    order: list[int] = []

    async def wait(index: int) -> None:
        await gate.enter()
        order.append(index)

    waiters = [asyncio.create_task(wait(index)) for index in range(3)]
    await asyncio.sleep(0)
    assert order == []
    gate.leave()
    await asyncio.sleep(0)
    assert order == [0]
    gate.leave()
    gate.leave()
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2]
    assert not gate.try_enter()  # the three are inside and hold both places and one more
    for _ in range(3):
        gate.leave()
    assert gate.free == 3


async def test_a_gate_entry_cancelled_while_waiting_keeps_no_place() -> None:
    gate = Gate(1)
    assert gate.try_enter()
    waiting = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.leave()
    assert gate.free == 1
    assert gate.try_enter()


async def test_a_place_handed_to_a_cancelled_waiter_goes_to_the_next_one() -> None:
    gate = Gate(1)
    assert gate.try_enter()
    first = asyncio.create_task(gate.enter())
    second = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    gate.leave()  # hands the place to `first`...
    first.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # the place went on to `second`
    assert not gate.try_enter()
    gate.leave()
    assert gate.free == 1


def test_a_host_is_forgotten_when_its_last_user_parts() -> None:
    limiter = HostLimiter(2)
    first = limiter.join("example.com")
    assert limiter.join("example.com") is first
    assert limiter.active_hosts() == 1
    limiter.part("example.com", first)
    assert limiter.active_hosts() == 1
    limiter.part("example.com", first)
    assert limiter.active_hosts() == 0


async def test_a_forgotten_hosts_gate_serves_the_next_host_with_all_its_places() -> None:
    limiter = HostLimiter(2)
    first = limiter.join("a.example")
    assert limiter.join("a.example") is first
    assert first.try_enter()
    assert first.try_enter()
    assert limiter.join("a.example") is first  # a third check, which waits
    waiting = asyncio.create_task(first.enter())
    await asyncio.sleep(0)
    first.leave()  # the place goes to the waiter
    await waiting
    for _ in range(2):
        first.leave()
    for _ in range(3):
        limiter.part("a.example", first)
    assert limiter.active_hosts() == 0
    other = limiter.join("b.example")
    assert other is first  # reused, not made again
    assert other.users == 1
    assert other.try_enter()
    assert other.try_enter()
    assert not other.try_enter()
    assert limiter.join("a.example") is not other  # a host of its own again


def test_an_event_id_is_the_uuid_its_value_makes() -> None:
    made = new_event_id()
    twin = uuid.UUID(int=made.int)
    assert made == twin
    assert hash(made) == hash(twin)
    assert str(made) == str(twin)
    assert made.is_safe is twin.is_safe
    assert pickle.loads(pickle.dumps(made)) == twin
    assert made.version == 4


def test_a_contract_with_private_attributes_is_not_built_unvalidated() -> None:
    class WithPrivate(Contract):
        TYPE = "test.private"
        value: int
        _seen: int = PrivateAttr(0)

    with pytest.raises(TypeError, match="private attributes"):
        trusted(WithPrivate, {"value": 1})


def test_only_a_probe_on_the_in_process_bus_lets_checks_key_settings_by_identity() -> None:
    # In-process, a job is the scheduler's own contract, its settings its monitor's one dict;
    # from RabbitMQ every job's settings are a dict of their own, which identity would not find.
    assert Probe(InProcessBus(), Settings()).context().shared_settings
    broker = RabbitMQBus("amqp://guest:guest@127.0.0.1:5672/")  # not connected: no I/O
    assert not Probe(broker, Settings()).context().shared_settings
