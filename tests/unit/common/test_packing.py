"""Cutting a publish call's events into AMQP messages, and reading a packed message back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pingtower.common.events import CheckJob, Envelope
from pingtower.common.messaging.packing import (
    COUNT_HEADER,
    MAX_PACKED_JOBS,
    PACKED_CONTENT_TYPE,
    UnpackError,
    deadline_of,
    declared_count,
    is_packed,
    job_packs_of,
    packs_of,
    unpack,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def event(type_: str, **payload: object) -> Envelope:
    return Envelope(type=type_, producer="test", tenant="acme", payload=payload)


def test_consecutive_events_of_one_type_share_a_message_and_order_is_kept() -> None:
    a1, a2, b, a3 = event("a"), event("a"), event("b"), event("a")

    packs = packs_of([a1, a2, b, a3])

    assert [(p.routing_key, p.envelopes) for p in packs] == [
        ("a", [a1, a2]),
        ("b", [b]),
        ("a", [a3]),
    ]
    assert [p.packed for p in packs] == [True, False, False]


def test_a_lone_event_is_its_envelope_s_own_json() -> None:
    lone = event("a", n=1)

    [pack] = packs_of([lone])

    assert pack.body() == lone.to_bytes()
    assert Envelope.from_bytes(pack.body()) == lone


def test_a_packed_body_is_a_json_array_of_the_envelopes_and_unpacks_to_them() -> None:
    events = [event("a", n=n) for n in range(5)]

    [pack] = packs_of(events)

    assert json.loads(pack.body()) == [json.loads(e.to_bytes()) for e in events]
    assert unpack(pack.body(), 5) == events


def test_a_run_is_cut_at_the_event_count_cap() -> None:
    events = [event("a", n=n) for n in range(25)]

    packs = packs_of(events, max_events=10)

    assert [len(p.envelopes) for p in packs] == [10, 10, 5]
    assert [e for p in packs for e in p.envelopes] == events


def test_a_run_is_cut_before_the_body_exceeds_the_size_cap_and_a_large_event_goes_alone() -> None:
    small = [event("a", text="x" * 100) for _ in range(6)]
    large = event("a", text="y" * 5000)
    size = len(small[0].to_bytes())

    packs = packs_of([*small[:3], large, *small[3:]], max_bytes=3 * size + 10)

    assert [len(p.envelopes) for p in packs] == [3, 1, 3]
    assert all(len(p.body()) <= 3 * size + 10 for p in packs if p.packed)
    assert packs[1].envelopes == [large]


def test_a_cap_of_one_event_sends_each_alone() -> None:
    events = [event("a") for _ in range(4)]

    assert [p.packed for p in packs_of(events, max_events=1)] == [False] * 4


@pytest.mark.parametrize(
    ("body", "count"),
    [
        (b"not json", 1),
        (b"{}", 1),  # an envelope, not an array of them
        (b"[]", 1),
        (b'[{"type": "a"}]', 1),  # not a valid envelope
    ],
)
def test_a_malformed_pack_is_refused(body: bytes, count: int) -> None:
    with pytest.raises(UnpackError):
        unpack(body, count)


def test_a_pack_holding_fewer_or_more_events_than_it_says_is_refused() -> None:
    [pack] = packs_of([event("a"), event("a"), event("a")])

    with pytest.raises(UnpackError, match="says 2 events"):
        unpack(pack.body(), 2)
    with pytest.raises(UnpackError, match="says 4 events"):
        unpack(pack.body(), 4)


def test_only_the_packed_content_type_is_a_pack_and_a_missing_count_means_one() -> None:
    assert is_packed(PACKED_CONTENT_TYPE)
    assert not is_packed("application/json")
    assert not is_packed(None)
    assert declared_count({COUNT_HEADER: 7}) == 7
    assert declared_count({}) == 1
    assert declared_count(None) == 1
    assert declared_count({COUNT_HEADER: "7"}) == 1
    assert declared_count({COUNT_HEADER: 0}) == 1


def job(region: str, *, deadline_in: float) -> Envelope:
    check = CheckJob(
        monitor_id=uuid.uuid4(),
        check_type="http",
        target="http://127.0.0.1:9/",
        timeout_seconds=1.0,
        scheduled_at=NOW,
        deadline=NOW + timedelta(seconds=deadline_in),
        region=region,
    )
    return Envelope.wrap(check, producer="scheduler", tenant="acme")


def test_a_regions_jobs_share_packs_in_order_whatever_comes_between_them() -> None:
    eu = [job("eu", deadline_in=10) for _ in range(MAX_PACKED_JOBS + 3)]
    us = [job("us", deadline_in=10) for _ in range(2)]
    interleaved = [(eu[0], "eu"), (us[0], "us"), *((j, "eu") for j in eu[1:]), (us[1], "us")]

    packs = job_packs_of(interleaved, now=NOW)

    assert [(p.routing_key, p.envelopes) for p in packs] == [
        ("eu", eu[:MAX_PACKED_JOBS]),
        ("us", us),
        ("eu", eu[MAX_PACKED_JOBS:]),
    ]
    assert unpack(packs[0].body(), MAX_PACKED_JOBS) == eu[:MAX_PACKED_JOBS]


def test_a_job_pack_expires_with_its_latest_job_and_a_stale_job_goes_alone() -> None:
    early, late, middle = (job("eu", deadline_in=s) for s in (5, 30, 20))
    stale, due_now = job("eu", deadline_in=-1), job("eu", deadline_in=0)
    jobs = [early, stale, late, due_now, middle]

    packs = job_packs_of([(j, "eu") for j in jobs], now=NOW)

    assert [p.envelopes for p in packs] == [[early, late, middle], [stale], [due_now]]
    assert [p.deadline for p in packs] == [deadline_of(late), deadline_of(stale), NOW]
    assert [p.packed for p in packs] == [True, False, False]
    assert packs[1].body() == stale.to_bytes()  # alone: the envelope as before


def test_job_packs_are_cut_at_the_job_count_and_size_caps() -> None:
    jobs = [(job("eu", deadline_in=10), "eu") for _ in range(7)]
    size = len(jobs[0][0].to_bytes())

    assert [len(p.envelopes) for p in job_packs_of(jobs, now=NOW, max_jobs=3)] == [3, 3, 1]
    by_size = job_packs_of(jobs, now=NOW, max_bytes=2 * size + 5)
    assert [len(p.envelopes) for p in by_size] == [2, 2, 2, 1]
    assert [p.packed for p in job_packs_of(jobs, now=NOW, max_jobs=1)] == [False] * 7


def test_a_jobs_deadline_is_read_from_a_parsed_or_a_dumped_payload() -> None:
    made = job("eu", deadline_in=10)
    received = Envelope.from_bytes(made.to_bytes())

    assert deadline_of(made) == deadline_of(received) == NOW + timedelta(seconds=10)
