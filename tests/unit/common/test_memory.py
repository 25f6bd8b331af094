"""Freed memory given back to the system after a peak (glibc's malloc_trim, as on Debian)."""

from __future__ import annotations

import os

from pingtower.common.memory import release_freed_memory


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_freed_memory_between_kept_objects_leaves_the_resident_set() -> None:
    # Objects over 512 bytes come from the C allocator; one kept in a hundred pins the heap's
    # top, so without a trim the freed ones stay resident
    kept: list[bytes] = []
    dropped: list[bytes] = []
    for i in range(150_000):
        (kept if i % 100 == 0 else dropped).append(bytes(1000 + i % 50))
    peak = resident_mib()
    dropped.clear()
    freed = resident_mib()
    assert release_freed_memory() is True
    after = resident_mib()
    assert peak - freed < 30  # glibc kept it
    assert freed - after > 100  # about 145 MiB were allocated and freed
    assert len(kept) == 1500


def test_nothing_to_give_back_is_no_error() -> None:
    release_freed_memory()
    assert release_freed_memory() in (True, False)
