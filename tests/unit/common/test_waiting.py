import asyncio
import contextlib
import sys

import pytest

from pingtower.common.waiting import woken


async def test_true_when_the_event_is_set_in_time() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await woken(event, 5) is True


async def test_false_after_the_deadline() -> None:
    assert await woken(asyncio.Event(), 0.01) is False


async def test_a_cancellation_at_the_moment_of_the_wake_up_is_not_lost() -> None:
    # The race that asyncio.wait_for loses on Python 3.11: the event is set and the waiting
    # task cancelled before it runs again. The task must end cancelled, not go on.
    event = asyncio.Event()
    went_on = False

    async def waiter() -> None:
        nonlocal went_on
        await woken(event, 300)
        went_on = True

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not went_on


async def test_wait_for_loses_that_cancellation_before_python_3_12() -> None:
    # Holds the reason for the helper (and shows the race above is the real one): Python
    # 3.12 rebuilt asyncio.wait_for on asyncio.timeout.
    event = asyncio.Event()
    went_on = False

    async def waiter() -> None:
        nonlocal went_on
        await asyncio.wait_for(event.wait(), 300)
        went_on = True

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert went_on is (sys.version_info < (3, 12))
