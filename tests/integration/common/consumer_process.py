"""A consumer process for the kill test: it subscribes, says how many events its handler was
given on stdout, and then never returns from the handler; the test SIGKILLs it there, before
any acknowledgement.

Run: python -m tests.integration.common.consumer_process <broker-url> <namespace> <consumer>
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from pingtower.common.events import Envelope
from pingtower.common.messaging.rabbitmq import RabbitMQBus


async def main(url: str, namespace: str, consumer: str) -> None:
    bus = RabbitMQBus(url, namespace=namespace)
    never = asyncio.Event()

    async def handler(batch: Sequence[Envelope]) -> None:
        print(f"handling {len(batch)}", flush=True)
        await never.wait()

    bus.subscribe(consumer, ["#"], handler)
    await bus.start()
    print("consuming", flush=True)
    await never.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
