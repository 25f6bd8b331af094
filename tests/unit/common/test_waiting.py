import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

from pingtower.common.waiting import woken


async def test_true_when_the_event_is_set_in_time() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await woken(event, 5) is True


async def test_false_after_the_deadline() -> None:
    assert await woken(asyncio.Event(), 0.01) is False


async def went_on_after_a_stop_at_its_wake_up(
    wait: Callable[[asyncio.Event], Awaitable[object]],
) -> bool:
    """The race that asyncio.wait_for loses on Python 3.11: the event is set and the waiting
    task cancelled before it runs again. Whether the task went on past its wait."""
    event = asyncio.Event()
    went_on = False

    async def waiter() -> None:
        nonlocal went_on
        await wait(event)
        went_on = True

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return went_on


async def test_a_cancellation_at_the_moment_of_the_wake_up_is_not_lost() -> None:
    assert not await went_on_after_a_stop_at_its_wake_up(lambda event: woken(event, 300))


async def test_wait_for_loses_that_cancellation_before_python_3_12() -> None:
    # Holds the reason for the helper (and shows the race above is the real one): Python
    # 3.12 rebuilt asyncio.wait_for on asyncio.timeout.
    went_on = await went_on_after_a_stop_at_its_wake_up(
        lambda event: asyncio.wait_for(event.wait(), 300)
    )
    assert went_on is (sys.version_info < (3, 12))
