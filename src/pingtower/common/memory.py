"""Giving memory that was freed back to the system, after work with a large transient peak.

CPython hands objects over 512 bytes (a cell's histogram, a row's JSON text) and SQLite its
pages to the C library's allocator. glibc keeps freed chunks for reuse and returns memory to
the system only from the top of its heaps, so one peak among long-lived allocations stays in
the resident set for good: the statistics fold of 50,000 monitors' cells left about 140-180
MiB resident each time (bench/README.md, performance round 15). `malloc_trim(0)` returns the
whole free pages of every heap; there is no Python or library call for it, hence ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool | None:
    """Return the C allocator's free pages to the system: True if some were, False if none
    were, None where the C library cannot (not glibc). Returning 300 MiB took 25 ms here, a
    heap with nothing to return about 2 ms: call it after a peak, not on a hot path. ctypes
    lets go of the GIL during the call, so it may run on a worker thread."""
    trim = _malloc_trim()
    if trim is None:
        return None
    return bool(trim(0))
