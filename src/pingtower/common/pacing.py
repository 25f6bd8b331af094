"""Background work that gives way to the checks.

A periodic job of the embedded process (statistics folding a minute of 50,000 monitors'
cells, its metrics snapshot) shares the event loop with the scheduler, the probe and the
consumers. Yielding between its slices bounds each stall, but a loop that is already busy
then gives the job a share as large as any other ready task's for as long as it runs: the fold
took seconds of the loop at each minute's turn and the checks scheduled then started up to 2 s
late. Run under `paced`, the job's `pause` between slices sleeps long enough that its slices
take at most `share` of the loop's time; outside `paced`, `pause` only yields (a test or a
command calling the job directly runs it at full speed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

# A quarter of the loop: a fold that needs 4 s of it spreads over about 16 s of its minute.
BACKGROUND_SHARE = 0.25
# The longest sleep after one slice (a slice that awaited a long database trip is not all
# loop time).
MAX_PAUSE = 1.0


@dataclass
class Pace:
    share: float
    since: float  # perf_counter at the end of the last pause
    worked: float = 0.0  # seconds of the work's slices so far


_current: ContextVar[Pace | None] = ContextVar("pingtower_pace", default=None)


@contextlib.contextmanager
def paced(share: float = BACKGROUND_SHARE) -> Iterator[Pace]:
    """Run the work inside (in this task and the tasks it starts) at `share` of the loop."""
    if not 0 < share <= 1:
        raise ValueError("share must be in (0, 1]")
    pace = Pace(share, time.perf_counter())
    token = _current.set(pace)
    try:
        yield pace
    finally:
        _current.reset(token)


def current() -> Pace | None:
    return _current.get()


async def pause() -> None:
    """Between two slices of background work: yield, and under `paced` sleep for the time
    that keeps the work at its share (the slice's time x (1 - share) / share)."""
    pace = _current.get()
    if pace is None:
        await asyncio.sleep(0)
        return
    worked = time.perf_counter() - pace.since
    pace.worked += worked
    await asyncio.sleep(min(worked * (1 - pace.share) / pace.share, MAX_PAUSE))
    pace.since = time.perf_counter()
