"""Baseline: the raw one-hop RabbitMQ rate of persistent messages with aio-pika on this machine.

A publisher (confirm mode, a window of unconfirmed messages in flight) and a consumer (manual
ack, prefetch) on one durable queue; rate = messages / (last consumed - first published).
The engine's end-to-end rates are compared with this figure measured in the same run, because
the machine is shared and its speed varies from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid

import aio_pika

AMQP_URL = os.environ.get("WCE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BODY = json.dumps(
    {"tenant_id": str(uuid.uuid4()), "campaign_id": str(uuid.uuid4()), "recipient_ids": [1]}
).encode()


async def one_run(
    count: int, window: int, prefetch: int, queue_type: str = "classic", amqp_url: str = AMQP_URL
) -> float:
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=prefetch)
        name = f"bench.baseline.{uuid.uuid4().hex[:8]}"
        queue = await consume_channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": queue_type}
        )
        received = 0
        done = asyncio.Event()
        last_at = 0.0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received, last_at
            await message.ack()
            received += 1
            if received == count:
                last_at = time.perf_counter()
                done.set()

        consumer_tag = await queue.consume(on_message)
        semaphore = asyncio.Semaphore(window)

        async def publish_one() -> None:
            async with semaphore:
                await channel.default_exchange.publish(
                    aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=name
                )

        started = time.perf_counter()
        await asyncio.gather(*(publish_one() for _ in range(count)))
        await asyncio.wait_for(done.wait(), timeout=300)
        await queue.cancel(consumer_tag)
        await queue.delete(if_unused=False, if_empty=False)
        return count / (last_at - started)
    finally:
        await connection.close()


async def measure(
    count: int,
    runs: int,
    window: int = 256,
    prefetch: int = 256,
    queue_type: str = "classic",
    amqp_url: str = AMQP_URL,
) -> dict[str, float | list[float] | str]:
    """Median rate of ``runs`` runs; ``queue_type`` "quorum" measures the queue type the engine's
    work queues are (replicated on a cluster; one node here)."""
    rates = [await one_run(count, window, prefetch, queue_type, amqp_url) for _ in range(runs)]
    return {
        "queue_type": queue_type,
        "messages": count,
        "rates_per_s": [round(r, 1) for r in rates],
        "median_per_s": round(statistics.median(rates), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--queue-type", choices=["classic", "quorum"], default="classic")
    args = parser.parse_args()
    result = json.dumps(asyncio.run(measure(args.count, args.runs, queue_type=args.queue_type)), indent=2)
    print(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(result + "\n")


if __name__ == "__main__":
    main()
