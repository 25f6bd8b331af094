"""`pingtower.cli` on uvloop: `python -m bench.uvloop_cli up ...`.

The CLI's `_serve` runs `asyncio.run`, i.e. the standard event loop; this sets uvloop's policy
first so that the schedule-keeping benchmark can measure what uvloop would change
(`--uvloop`) without changing the CLI.
"""

from __future__ import annotations

import asyncio

import uvloop

from pingtower.cli import main

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    main()
