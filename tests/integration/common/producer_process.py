"""A producer process for the kill test: it commits a change with its outbox row, says so on
stdout, and then waits where its relay would publish; the test SIGKILLs it in that window.

Run: python -m tests.integration.common.producer_process <database-url> <name>
"""

from __future__ import annotations

import asyncio
import sys

from pingtower.common.db import create_engine, session_factory
from pingtower.common.messaging.outbox import Outbox
from tests.integration.common.things import create_thing, outbox


async def main(url: str, name: str) -> None:
    engine = create_engine(url)
    envelope = await create_thing(session_factory(engine), Outbox(outbox, "things"), name)
    print(f"committed {envelope.id}", flush=True)
    await asyncio.sleep(60)  # never reached in the test: the process is killed first


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
