"""Background work under `paced` sleeps between its slices so that they take at most its share
of the event loop; outside it, `pause` only yields. The sleeps asked for are recorded (their
length on a loaded machine is not the point)."""

from __future__ import annotations

import asyncio
import time

import pytest

from pingtower.common import pacing

real_sleep = asyncio.sleep


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sleeps `pause` asks for (each one yields at once; patched where `pause` finds it)."""
    found: list[float] = []

    async def sleep(seconds: float) -> None:
        found.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return found


async def test_outside_paced_a_pause_only_yields(asked: list[float]) -> None:
    assert pacing.current() is None
    busy(0.02)
    await pacing.pause()
    assert asked == [0]


async def test_a_paced_slice_is_followed_by_a_sleep_that_keeps_the_work_at_its_share(
    asked: list[float],
) -> None:
    with pacing.paced(share=0.25) as pace:
        busy(0.02)
        await pacing.pause()
        busy(0.01)
        await pacing.pause()
    first, second = asked
    assert first >= 3 * 0.02  # a quarter of the loop: three times the slice asleep
    assert second >= 3 * 0.01
    assert pace.worked >= 0.03
    assert pacing.current() is None  # left with the block


async def test_the_pace_reaches_the_tasks_the_work_starts_and_each_pause_is_capped(
    asked: list[float],
) -> None:
    async def step() -> None:
        busy(0.03)
        await pacing.pause()

    with pacing.paced(share=0.01) as pace:  # 99 % asleep: 2.97 s, capped
        await asyncio.create_task(step())
    assert asked == [pacing.MAX_PAUSE]
    assert pace.worked >= 0.03


def test_a_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="share"), pacing.paced(share=0):
        pass
