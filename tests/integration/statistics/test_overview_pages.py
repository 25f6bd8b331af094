"""The overview comes in pages (offset and limit, with the total) so a workspace of thousands
of monitors answers its first page without computing every monitor's figures."""

from __future__ import annotations

import time
import uuid

from tests.integration.statistics.conftest import Harness
from tests.integration.statistics.story import created, feed, get, wrap

COUNT = 2000


async def test_two_thousand_monitors_come_in_pages_that_add_up_to_all_of_them(
    stats: Harness,
) -> None:
    ids = [uuid.UUID(int=i + 1, version=4) for i in range(COUNT)]
    await feed(stats, [wrap(created(m, f"monitor {i:04d}")) for i, m in enumerate(ids)])

    began = time.perf_counter()
    first = await get(stats, "/overview", limit=50)
    elapsed = time.perf_counter() - began
    print(f"first overview page of {COUNT} monitors: {elapsed * 1000:.0f} ms")
    assert (first["total"], first["offset"], first["limit"], first["next_offset"]) == (
        COUNT,
        0,
        50,
        50,
    )
    assert [item["name"] for item in first["items"]] == [f"monitor {i:04d}" for i in range(50)]

    last = await get(stats, "/overview", limit=50, offset=1990, order="desc")
    assert [item["name"] for item in last["items"]] == [
        f"monitor {i:04d}" for i in range(9, -1, -1)
    ]
    assert last["next_offset"] is None

    # sorted by a computed figure, every page is cut from the same order
    pages = [
        await get(stats, "/overview", sort="status", limit=700, offset=o) for o in (0, 700, 1400)
    ]
    seen = [item["monitor_id"] for page in pages for item in page["items"]]
    assert sorted(seen) == sorted(str(m) for m in ids)
    assert [page["next_offset"] for page in pages] == [700, 1400, None]


async def test_an_offset_past_the_end_gives_an_empty_page_and_the_total(stats: Harness) -> None:
    await feed(stats, [wrap(created(uuid.uuid4(), "only"))])
    page = await get(stats, "/overview", offset=5)
    assert (page["items"], page["total"], page["next_offset"]) == ([], 1, None)


async def test_without_a_limit_every_monitor_comes_in_one_answer(stats: Harness) -> None:
    await feed(stats, [wrap(created(uuid.uuid4(), f"m{i}")) for i in range(3)])
    page = await get(stats, "/overview")
    assert (len(page["items"]), page["total"], page["limit"], page["next_offset"]) == (
        3,
        3,
        None,
        None,
    )
