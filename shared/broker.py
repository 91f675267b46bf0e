"""Broker connection, confirmed publishing and parking consumers.

Publishing is persistent, confirmed, ``mandatory`` (an unroutable message raises instead of
vanishing) and bounded by a timeout. Consumers ack manually; a message that cannot be parsed is
parked in ``<queue>.dlq`` with the reason in its headers and the consumer keeps going.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from pydantic import ValidationError

from shared import topology
from shared.events import Event
from shared.logging import get_logger

log = get_logger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker could not take a message (down, unroutable, not confirmed in time)."""


class PoisonMessage(ValueError):
    """A message that can never be processed; it is parked rather than retried."""


async def connect(url: str, *, retry_s: float = 60.0, name: str = "wce") -> AbstractRobustConnection:
    """``connect_robust`` (which restores channels, QoS and consumers after a drop) behind a
    start-up retry loop, because the first connect of a robust connection is not retried."""
    deadline = time.monotonic() + retry_s
    delay = 0.2
    while True:
        try:
            return await aio_pika.connect_robust(url, client_properties={"connection_name": name})
        except (OSError, aiormq.exceptions.AMQPError, ConnectionError) as exc:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"broker not reachable at start-up: {exc}") from exc
            log.warning("broker not ready, retrying", error=str(exc), delay_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class Publisher:
    """A confirm-mode channel with the exchanges it publishes to."""

    def __init__(self, channel: AbstractChannel, timeout_s: float) -> None:
        self._channel = channel
        self._timeout_s = timeout_s
        self._exchanges: dict[str, AbstractExchange] = {}

    @classmethod
    async def open(cls, connection: AbstractRobustConnection, *, timeout_s: float = 10.0) -> Publisher:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        return cls(channel, timeout_s)

    @property
    def channel(self) -> AbstractChannel:
        return self._channel

    async def _exchange(self, name: str) -> AbstractExchange:
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = (
                await self._channel.get_exchange(name, ensure=False)
                if name
                else self._channel.default_exchange
            )
            self._exchanges[name] = exchange
        return exchange

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        event: Event,
        *,
        headers: dict[str, Any] | None = None,
        mandatory: bool = True,
    ) -> None:
        await self.publish_raw(
            exchange,
            routing_key,
            event.to_bytes(),
            event.message_type(),
            headers=headers,
            mandatory=mandatory,
        )

    async def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        message_type: str,
        *,
        headers: dict[str, Any] | None = None,
        mandatory: bool = True,
    ) -> None:
        """Publish and wait for the broker's confirm. ``mandatory=False`` only for events that may
        legitimately have no subscriber (lifecycle notifications)."""
        message = topology.persistent_message(body, message_type=message_type, headers=headers)
        try:
            target = await self._exchange(exchange)
            await target.publish(
                message, routing_key=routing_key, mandatory=mandatory, timeout=self._timeout_s
            )
        except (aio_pika.exceptions.DeliveryError, aio_pika.exceptions.PublishError) as exc:
            raise BrokerUnavailable(
                f"{exchange}/{routing_key}: message not routed or refused: {exc}"
            ) from exc
        except TimeoutError as exc:
            raise BrokerUnavailable(
                f"{exchange}/{routing_key}: no confirm within {self._timeout_s}s"
            ) from exc
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailable(f"{exchange}/{routing_key}: {exc}") from exc

    async def park(self, message: AbstractIncomingMessage, queue: str, reason: str) -> None:
        headers = dict(message.headers or {})
        headers[topology.PARK_REASON_HEADER] = reason[:1000]
        headers[topology.PARK_QUEUE_HEADER] = queue
        await self.publish_raw(
            topology.PARKED_EXCHANGE, queue, message.body, message.type or "unknown", headers=headers
        )


Handler = Callable[[Any, AbstractIncomingMessage], Awaitable[None]]


async def consume(
    queue: AbstractQueue,
    model: type[Event],
    handler: Handler,
    publisher: Publisher,
    *,
    retry_delay_s: float = 1.0,
) -> str:
    """Consume ``queue``: decode each body with ``model`` and call ``handler(event, message)``.

    Undecodable bodies and PoisonMessage are parked; other exceptions requeue the message after
    a short pause (the usual cause is a database or broker hiccup that will pass).
    """

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            event = model.model_validate_json(message.body)
        except ValidationError as exc:
            await _park_and_ack(message, queue.name, f"invalid {model.message_type()}: {exc}", publisher)
            return
        try:
            await handler(event, message)
        except PoisonMessage as exc:
            await _park_and_ack(message, queue.name, str(exc), publisher)
        except Exception as exc:
            log.warning("handler failed, message requeued", queue=queue.name, error=repr(exc))
            await asyncio.sleep(retry_delay_s)
            if not message.processed:
                await message.nack(requeue=True)
        else:
            if not message.processed:
                await message.ack()

    return await queue.consume(on_message)


async def _park_and_ack(
    message: AbstractIncomingMessage, queue: str, reason: str, publisher: Publisher
) -> None:
    log.warning("message parked", queue=queue, reason=reason[:300])
    try:
        await publisher.park(message, queue, reason)
    except BrokerUnavailable:
        await message.nack(requeue=True)
        return
    await message.ack()


async def queue_depth(channel: AbstractChannel, name: str) -> int:
    """Messages ready in ``name`` (passive declare; 0 when the queue does not exist)."""
    try:
        queue = await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return 0
    return int(queue.declaration_result.message_count or 0)
