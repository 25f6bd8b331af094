"""`pingtower.cli` with an event-loop stall recorder: `python -m bench.loop_lag_cli PATH up ...`.

Three recorders append to PATH (one event per line, wall-clock time first), so that
`bench.schedule_keeping --loop-lag` can tell, for its measured window, how long the event loop
was held and by what:

- `lag T MS`: a task sleeps 10 ms over and over; how much later than asked it woke is how long
  something else held the loop (or the GIL) just then.
- `gc T GEN MS`: every collection of generation 1 and 2 and every collection of generation 0
  longer than 5 ms (gc.callbacks), with its pause.
- `stall T FRAMES`: while the lag task has not run for over 100 ms, a thread samples the main
  thread's stack every 25 ms; FRAMES are its innermost PingTower frames (else the innermost
  frames), innermost first. Which code holds the loop, not only that something does.

The recorders cost the process about 100 wake-ups a second of the task and 40 of the thread.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections import deque
from collections.abc import Coroutine
from types import FrameType
from typing import IO, Any

import pingtower.cli as cli

TICK = 0.010
STALL = 0.100
SAMPLE_EVERY = 0.025
GC_REPORTED_MS = 5.0


class Recorder:
    """Every recorder only appends its line to a deque (atomic, no lock): a collection can
    start in any thread at any allocation, and its callback must not wait for a lock that
    thread holds (a lock here hung a process for good). The watchdog thread alone writes the
    file."""

    def __init__(self, path: str) -> None:
        self.out: IO[str] = open(path, "a")  # noqa: SIM115 - lives with the process
        self.lines: deque[str] = deque()
        self.last_tick = time.monotonic()
        self.loop_thread = threading.get_ident()
        self.gc_started = 0.0

    def write(self, line: str) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        while self.lines:
            self.out.write(self.lines.popleft() + "\n")
        self.out.flush()

    async def lag_task(self) -> None:
        while True:
            asked = time.monotonic()
            self.last_tick = asked
            await asyncio.sleep(TICK)
            woke = time.monotonic()
            self.last_tick = woke
            self.write(f"lag {time.time():.3f} {(woke - asked - TICK) * 1000:.2f}")

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.gc_started = time.perf_counter()
            return
        pause = (time.perf_counter() - self.gc_started) * 1000
        generation = info["generation"]
        if generation > 0 or pause > GC_REPORTED_MS:
            self.write(f"gc {time.time():.3f} {generation} {pause:.2f}")

    def watchdog(self) -> None:
        while True:
            time.sleep(SAMPLE_EVERY)
            if time.monotonic() - self.last_tick >= STALL:
                frame = sys._current_frames().get(self.loop_thread)
                if frame is not None:
                    self.write(f"stall {time.time():.3f} {frames(frame)}")
                del frame
            self.flush()


def frames(frame: FrameType | None, keep: int = 4) -> str:
    """The innermost `keep` PingTower frames of a stack (else the innermost frames)."""
    ours: list[str] = []
    every: list[str] = []
    while frame is not None:
        code = frame.f_code
        where = f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}:{frame.f_lineno}"
        every.append(where)
        if "/pingtower/" in code.co_filename:
            ours.append(where)
        frame = frame.f_back
    chosen = ours[:keep] if ours else every[:keep]
    # with the innermost frame of all when that is not ours (a library or C-bound call)
    if every and ours and every[0] != ours[0]:
        chosen = [every[0], *chosen]
    return " < ".join(chosen)


def install(path: str) -> None:
    recorder = Recorder(path)
    gc.callbacks.append(recorder.on_gc)
    run = cli._run

    def run_with_probe(coroutine: Coroutine[Any, Any, None]) -> None:
        async def main() -> None:
            recorder.loop_thread = threading.get_ident()
            threading.Thread(target=recorder.watchdog, name="loop-lag", daemon=True).start()
            probe = asyncio.create_task(recorder.lag_task())
            try:
                await coroutine
            finally:
                probe.cancel()

        run(main())

    cli._run = run_with_probe


if __name__ == "__main__":
    install(sys.argv.pop(1))
    cli.main()
