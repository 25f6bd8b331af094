"""Waiting for a wake-up with a deadline, in a task that may be stopped meanwhile.

Why not `asyncio.wait_for(event.wait(), seconds)`: on Python 3.11 it returns normally when
the task is cancelled at the moment the event is set (CPython gh-86296); a relay or worker
stopped just as new work woke it then went round its loop again and slept a whole poll (300 s
in a test) with its cancellation lost, and the service's stop timed out. `asyncio.timeout`
runs the wait in the caller's own task, so a cancellation always reaches it.
"""

from __future__ import annotations

import asyncio


async def woken(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed: True when it was set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
