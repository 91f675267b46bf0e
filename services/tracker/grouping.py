"""Group commit of status callbacks to the broker.

A persistent, confirmed publish costs the broker a disk write per message, which caps one
message per callback far below the rate Twilio can post callbacks at. So callbacks are grouped:
a callback that arrives while no publish awaits its confirm is published at once (no added
latency when traffic is light); otherwise it waits for that confirm and goes out with everything
else that arrived meanwhile. One publish in flight makes the largest groups, and measured
cheapest per callback; ``max_in_flight`` allows more where the broker's confirms are slow.
Every submitter returns only once the message carrying its callback is confirmed, so a 200 to
Twilio still means durable.
"""

from __future__ import annotations

import asyncio

from services.tracker.wire import MESSAGE_TYPE, batch_body
from shared import topology
from shared.broker import Publisher


class CallbackGrouper:
    def __init__(self, publisher: Publisher, *, max_in_flight: int = 1, max_group: int = 1000) -> None:
        self._publisher = publisher
        self._max_in_flight = max_in_flight
        self._max_group = max_group
        self._waiting: list[tuple[bytes, asyncio.Future[None]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, callback: bytes) -> None:
        """Return once ``callback`` (from ``wire.encode_callback``) is confirmed by the broker;
        raise BrokerUnavailable if not."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((callback, future))
        if self._in_flight < self._max_in_flight:
            self._publish_next()
        await future

    def _publish_next(self) -> None:
        group = self._waiting[: self._max_group]
        del self._waiting[: self._max_group]
        self._in_flight += 1
        task = asyncio.create_task(self._publish(group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, group: list[tuple[bytes, asyncio.Future[None]]]) -> None:
        try:
            body = batch_body([callback for callback, _ in group])
            await self._publisher.publish_raw(
                topology.STATUS_EXCHANGE, topology.STATUS_ROUTING_KEY, body, MESSAGE_TYPE
            )
        except Exception as exc:
            # Every waiter must learn the outcome, whatever it was.
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
        else:
            for _, future in group:
                if not future.done():
                    future.set_result(None)
        finally:
            self._in_flight -= 1
            if self._waiting:
                self._publish_next()
