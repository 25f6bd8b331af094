"""`pingtower.cli` with tracemalloc on: `python -m bench.tracemalloc_cli PATH [--later] up ...`.

Each SIGUSR1 writes a snapshot of the Python heap to PATH.1, PATH.2, ... so that
`bench.schedule_keeping --tracemalloc PATH` can compare the heap before the monitors were
created, at the measured window's start and at its end (what each structure costs per monitor,
and what grows while the schedule runs).
With `--later` tracing starts at SIGUSR2 instead of at once: the import of tens of thousands
of monitors under tracemalloc is slow enough to time out SQLite's writers, and a snapshot of
tracing started at the window's start holds what the window allocated and still holds.
tracemalloc sees Python's allocations only; SQLite's page caches and other C libraries'
memory show in the resident set but not here.
"""

from __future__ import annotations

import signal
import sys
import tracemalloc
from types import FrameType

from pingtower.cli import main

FRAMES = 12  # deep enough to see which of our modules holds an allocation made in a library


def dump_on_signal(prefix: str) -> None:
    taken = 0

    def dump(_signal: int, _frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        tracemalloc.take_snapshot().dump(f"{prefix}.{taken}")

    signal.signal(signal.SIGUSR1, dump)


def start_on_signal() -> None:
    signal.signal(signal.SIGUSR2, lambda _signal, _frame: tracemalloc.start(FRAMES))


if __name__ == "__main__":
    prefix = sys.argv.pop(1)
    if sys.argv[1] == "--later":
        sys.argv.pop(1)
        start_on_signal()
    else:
        tracemalloc.start(FRAMES)
    dump_on_signal(prefix)
    main()
