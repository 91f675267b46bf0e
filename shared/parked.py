"""Parked messages (``<queue>.dlq``): list, inspect, replay and purge.

Messages are read with ``basic.get`` on a channel of their own and left unacknowledged; those not
taken (acknowledged after a replay or a purge) go back to the parked queue, in their order, when
that channel closes. A replay publishes the message as it first arrived — same body, type and
headers without the ``x-parked-*`` ones — to its original exchange and routing key, so it reaches
the queue (and the handler) it came from. Each operation looks at no more messages than the queue
held when it started, so a replayed message parked again is not replayed twice in one call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from shared import topology
from shared.broker import BrokerUnavailable, Publisher

BODY_PREVIEW_CHARS = 4096
# What a broker command raises when the broker is gone or fails it (as in Publisher.publish_raw).
_BROKER_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError)
_PARKED_HEADERS = frozenset(
    {
        topology.PARK_REASON_HEADER,
        topology.PARK_QUEUE_HEADER,
        topology.PARK_ERROR_HEADER,
        topology.PARK_DELIVERY_COUNT_HEADER,
        topology.PARK_ID_HEADER,
        topology.PARK_AT_HEADER,
        topology.PARK_EXCHANGE_HEADER,
        topology.PARK_ROUTING_KEY_HEADER,
        # The parked queue's own count of deliveries (inspections), not the message's.
        topology.DELIVERY_COUNT_HEADER,
    }
)


class UnknownQueue(LookupError):
    pass


@dataclass(frozen=True)
class ParkedMessage:
    id: str
    reason: str
    error: str
    source_queue: str
    delivery_count: int
    parked_at: str
    exchange: str
    routing_key: str
    type: str
    size: int
    body: str

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> ParkedMessage:
        headers = message.headers or {}

        def text(name: str) -> str:
            value = headers.get(name, "")
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

        count = headers.get(topology.PARK_DELIVERY_COUNT_HEADER)
        return cls(
            id=text(topology.PARK_ID_HEADER),
            reason=text(topology.PARK_REASON_HEADER),
            error=text(topology.PARK_ERROR_HEADER),
            source_queue=text(topology.PARK_QUEUE_HEADER),
            delivery_count=count if isinstance(count, int) else 0,
            parked_at=text(topology.PARK_AT_HEADER),
            exchange=text(topology.PARK_EXCHANGE_HEADER),
            routing_key=text(topology.PARK_ROUTING_KEY_HEADER),
            type=message.type or "",
            size=len(message.body),
            body=message.body[:BODY_PREVIEW_CHARS].decode(errors="replace"),
        )


def parked_queues(tenant_ids: list[str]) -> list[str]:
    """The source queues that can park messages: the work queues and every tenant's dispatch queue."""
    return [spec.name for spec in topology.WORK_QUEUES] + [
        topology.dispatch_queue_name(tenant_id) for tenant_id in tenant_ids
    ]


async def count(channel: AbstractChannel, queue: str) -> int:
    """Messages parked from ``queue`` (0 when its parked queue does not exist)."""
    try:
        declared = await channel.declare_queue(topology.parked_queue_name(queue), passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise UnknownQueue(queue) from exc
    return int(declared.declaration_result.message_count or 0)


class ParkedQueues:
    def __init__(self, connection: AbstractRobustConnection, publisher: Publisher) -> None:
        self._connection = connection
        self._publisher = publisher

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        """A channel of its own (a passive declare of a missing queue closes it), closed after;
        a broker that fails on the way is reported as ``BrokerUnavailable``."""
        try:
            channel = await self._connection.channel()
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"parked queues: {exc}") from exc
        try:
            yield channel
        except BrokerUnavailable:
            raise
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"parked queues: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def counts(self, queues: list[str]) -> dict[str, int]:
        result: dict[str, int] = {}
        for queue in queues:
            async with self._channel() as channel:
                with contextlib.suppress(UnknownQueue):
                    result[queue] = await count(channel, queue)
        return result

    async def inspect(self, queue: str, *, limit: int) -> tuple[int, list[ParkedMessage]]:
        """The number parked and the first ``limit`` messages, left in place: unacknowledged, every
        message read goes back to the queue in its place when the channel closes."""
        async with self._channel() as channel:
            total = await count(channel, queue)
            parked = await channel.get_queue(topology.parked_queue_name(queue), ensure=False)
            messages: list[ParkedMessage] = []
            for _ in range(min(total, limit)):
                message = await parked.get(no_ack=False, fail=False)
                if message is None:
                    break
                messages.append(ParkedMessage.of(message))
            return total, messages

    async def replay(self, queue: str, *, ids: set[str] | None, limit: int) -> int:
        """Publish parked messages again where they came from (``ids``, or the first ``limit``)."""
        return await self._take(queue, ids=ids, limit=limit, replay=True)

    async def purge(self, queue: str, *, ids: set[str] | None, limit: int) -> int:
        """Delete parked messages (``ids``, or the first ``limit``)."""
        return await self._take(queue, ids=ids, limit=limit, replay=False)

    async def _take(self, queue: str, *, ids: set[str] | None, limit: int, replay: bool) -> int:
        taken = 0
        async with self._channel() as channel:
            total = await count(channel, queue)
            parked = await channel.get_queue(topology.parked_queue_name(queue), ensure=False)
            for _ in range(total):
                if taken >= limit or (ids is not None and taken >= len(ids)):
                    break
                message = await parked.get(no_ack=False, fail=False)
                if message is None:
                    break
                if ids is not None and ParkedMessage.of(message).id not in ids:
                    continue
                if replay:
                    await self._republish(queue, message)
                await message.ack()
                taken += 1
            return taken

    async def _republish(self, queue: str, message: AbstractIncomingMessage) -> None:
        headers: dict[str, Any] = {
            key: value for key, value in (message.headers or {}).items() if key not in _PARKED_HEADERS
        }
        original = ParkedMessage.of(message)
        exchange, routing_key = original.exchange, original.routing_key
        if not exchange and not routing_key:
            # Parked before its origin was recorded: straight back to its queue.
            routing_key = queue
        await self._publisher.publish_raw(
            exchange, routing_key, message.body, message.type or "unknown", headers=headers
        )
