"""Broker connection, confirmed publishing and parking consumers.

Publishing is persistent, confirmed, ``mandatory`` (an unroutable message raises instead of
vanishing) and bounded by a timeout. Consumers ack manually; a message that cannot be processed
is parked in ``<queue>.dlq`` with the reason in its headers and the consumer keeps going, one
that failed for a passing reason is handed back after a back-off (``shared.failures``).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
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
from yarl import URL

from shared import topology
from shared.events import Event
from shared.failures import TransientFailure, is_transient, retry_delay_s
from shared.logging import get_logger
from shared.metrics import PARKED_MESSAGES
from shared.settings import Settings, get_settings

log = get_logger(__name__)


# Why a message was parked (the ``x-parked-reason`` header and the metric's label).
INVALID = "invalid"
REJECTED = "rejected"
FAILED = "failed"
REDELIVERY_LIMIT = "redelivery_limit"
PARK_REASONS = (INVALID, REJECTED, FAILED, REDELIVERY_LIMIT)


class BrokerUnavailable(RuntimeError, TransientFailure):
    """The broker could not take a message (down, unroutable, not confirmed in time)."""


class PoisonMessage(ValueError):
    """A message that can never be processed; it is parked rather than retried."""


def broker_addresses(url: str) -> list[str]:
    """The broker URLs of ``WCE_AMQP_URL``: one, or several separated by commas (the nodes of a
    cluster, each a full URL with its credentials and vhost)."""
    addresses = [part.strip() for part in url.split(",") if part.strip()]
    if not addresses:
        raise ValueError("WCE_AMQP_URL names no broker")
    return addresses


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over several broker nodes: every (re)connect tries the node it was
    last connected to, then each other node in turn, so losing a node moves the connection, its
    channels and its consumers to a live one. Quorum queues keep their messages on the others."""

    def __init__(self, addresses: list[str], **kwargs: Any) -> None:
        super().__init__(URL(addresses[0]), **kwargs)
        self._addresses = [URL(address) for address in addresses]
        self._current = 0

    @property
    def address(self) -> str:
        """The node connected to (or tried last), without its credentials."""
        url = self._addresses[self._current]
        return f"{url.host}:{url.port}"

    # aio-pika's RobustConnection calls this (a name-mangled private method) for the first
    # connect and for every reconnect; here it walks the node list.
    async def _RobustConnection__connect_transport(self) -> None:
        failure: BaseException | None = None
        for step in range(len(self._addresses)):
            index = (self._current + step) % len(self._addresses)
            self.url = self._addresses[index]
            try:
                await super()._RobustConnection__connect_transport()  # type: ignore[misc]
            except (OSError, aiormq.exceptions.AMQPError, ConnectionError, TimeoutError) as exc:
                failure = exc
                log.warning("broker node unreachable, trying the next", node=self.address, error=str(exc))
                continue
            if index != self._current:
                log.warning("connected to another broker node", node=f"{self.url.host}:{self.url.port}")
            self._current = index
            return
        assert failure is not None
        raise failure


async def connect(url: str, *, retry_s: float = 60.0, name: str = "wce") -> AbstractRobustConnection:
    """A robust connection (channels, QoS and consumers restored after a drop) to the broker, or
    to the first reachable node of a comma-separated list, behind a start-up retry loop, because
    the first connect of a robust connection is not retried."""
    addresses = broker_addresses(url)
    deadline = time.monotonic() + retry_s
    delay = 0.2
    while True:
        connection = FailoverConnection(
            addresses, client_properties={"connection_name": name}, reconnect_interval=1.0
        )
        try:
            await connection.connect(timeout=10)
            return connection
        except (OSError, aiormq.exceptions.AMQPError, ConnectionError, TimeoutError) as exc:
            await connection.close()
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"broker not reachable at start-up: {exc}") from exc
            log.warning("broker not ready, retrying", error=str(exc), delay_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class Publisher:
    """A confirm-mode channel with the exchanges it publishes to."""

    def __init__(self, channel: AbstractChannel, timeout_s: float, user_id: str | None = None) -> None:
        self._channel = channel
        self._timeout_s = timeout_s
        self._exchanges: dict[str, AbstractExchange] = {}
        # Stamped on every message: the broker vouches that it is this connection's user, which
        # is how consumers tell the engine's own commands from other publishers'.
        self._user_id = user_id

    @classmethod
    async def open(cls, connection: AbstractRobustConnection, *, timeout_s: float = 10.0) -> Publisher:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        # aio-pika's connections carry the URL they were opened with; the interface does not say so.
        url = getattr(connection, "url", None)
        return cls(channel, timeout_s, url.user if url is not None else None)

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
        message.user_id = self._user_id
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

    async def park(
        self,
        message: AbstractIncomingMessage,
        queue: str,
        reason: str,
        *,
        error: str = "",
        delivery_count: int = 1,
    ) -> None:
        """Move ``message`` to ``<queue>.dlq`` with why (``reason``, a short code), the error and
        where it came from; its original exchange and routing key are kept so it can be replayed."""
        await self.publish_raw(
            topology.PARKED_EXCHANGE,
            queue,
            message.body,
            message.type or "unknown",
            headers=parked_headers(message, queue, reason, error=error, delivery_count=delivery_count),
        )
        PARKED_MESSAGES.labels(queue, reason).inc()


def parked_headers(
    message: AbstractIncomingMessage, queue: str, reason: str, *, error: str, delivery_count: int
) -> dict[str, Any]:
    headers = {
        key: value
        for key, value in (message.headers or {}).items()
        # The broker's own count belongs to the delivery, not to the message.
        if key != topology.DELIVERY_COUNT_HEADER
    }
    headers.update(
        {
            topology.PARK_REASON_HEADER: reason,
            topology.PARK_QUEUE_HEADER: queue,
            topology.PARK_ERROR_HEADER: error[:2000],
            topology.PARK_DELIVERY_COUNT_HEADER: delivery_count,
            topology.PARK_ID_HEADER: uuid.uuid4().hex,
            topology.PARK_AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
            topology.PARK_EXCHANGE_HEADER: message.exchange or "",
            topology.PARK_ROUTING_KEY_HEADER: message.routing_key or "",
        }
    )
    return headers


def expose_parked_series(queue: str) -> None:
    """Start the queue's parked counters at zero, so the first parked message is an increase."""
    for reason in PARK_REASONS:
        PARKED_MESSAGES.labels(queue, reason)


Handler = Callable[[Any, AbstractIncomingMessage], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerPolicy:
    """How a consumer retries: back-off between deliveries of a message that failed for a
    transient reason, and how many deliveries any message gets before it is parked."""

    max_deliveries: int = 20
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsumerPolicy:
        return cls(
            max_deliveries=settings.consumer_max_deliveries,
            retry_base_s=settings.consumer_retry_base_s,
            retry_max_s=settings.consumer_retry_max_s,
        )


class DeliveryCounter:
    """How many times each message has been delivered.

    Quorum queues count deliveries themselves (``x-delivery-count``, the deliveries before this
    one). Classic queues only say ``redelivered``: this process counts the deliveries it handed
    back, by message id or body, in a bounded map; a redelivered message it never saw (its
    consumer died) counts as at least its second delivery.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._counts: OrderedDict[bytes, int] = OrderedDict()

    @staticmethod
    def _key(message: AbstractIncomingMessage) -> bytes:
        identity = message.message_id.encode() if message.message_id else message.body
        return hashlib.blake2b(identity + (message.routing_key or "").encode(), digest_size=16).digest()

    def delivery(self, message: AbstractIncomingMessage) -> int:
        """This delivery's number (1 for the first)."""
        counted = (message.headers or {}).get(topology.DELIVERY_COUNT_HEADER)
        if isinstance(counted, int) and not isinstance(counted, bool):
            return counted + 1
        seen = self._counts.get(self._key(message), 0)
        if message.redelivered:
            return max(seen, 1) + 1
        return seen + 1

    def handed_back(self, message: AbstractIncomingMessage, delivery: int) -> None:
        key = self._key(message)
        self._counts[key] = delivery
        self._counts.move_to_end(key)
        while len(self._counts) > self._capacity:
            self._counts.popitem(last=False)

    def done(self, message: AbstractIncomingMessage) -> None:
        if self._counts:
            self._counts.pop(self._key(message), None)


async def consume(
    queue: AbstractQueue,
    model: type[Event],
    handler: Handler,
    publisher: Publisher,
    *,
    policy: ConsumerPolicy | None = None,
) -> str:
    """Consume ``queue``: decode each body with ``model`` and call ``handler(event, message)``.

    A transient failure (``shared.failures``) hands the message back after a back-off that grows
    with its deliveries. Everything else is parked in ``<queue>.dlq`` with its reason and the
    consumer goes on: an undecodable body (``invalid``), a PoisonMessage (``rejected``), any
    other error (``failed``) and a message delivered more than ``max_deliveries`` times
    (``redelivery_limit``). A message whose parked copy the broker does not take is handed back
    like a transient failure: never dropped, and parked on a later delivery.
    """
    policy = policy or ConsumerPolicy.from_settings(get_settings())
    counter = DeliveryCounter()
    expose_parked_series(queue.name)

    async def hand_back(message: AbstractIncomingMessage, delivery: int, error: str) -> None:
        delay = retry_delay_s(delivery, base_s=policy.retry_base_s, max_s=policy.retry_max_s)
        log.warning("message handed back", queue=queue.name, error=error, delivery=delivery, retry_in_s=delay)
        await asyncio.sleep(delay)
        if not message.processed:
            counter.handed_back(message, delivery)
            await message.nack(requeue=True)

    async def park(message: AbstractIncomingMessage, reason: str, error: str, delivery: int) -> None:
        try:
            await publisher.park(message, queue.name, reason, error=error, delivery_count=delivery)
        except BrokerUnavailable as exc:
            # Never dropped: handed back like a passing failure, so a parked queue the broker
            # will not take (missing, unreachable) costs a delivery and a back-off each time,
            # not a loop running the handler again at full speed.
            await hand_back(message, delivery, f"not parked ({reason}): {exc}")
            return
        log.warning("message parked", queue=queue.name, reason=reason, error=error[:300])
        counter.done(message)
        if not message.processed:
            await message.ack()

    async def on_message(message: AbstractIncomingMessage) -> None:
        delivery = counter.delivery(message)
        if delivery > policy.max_deliveries:
            await park(
                message,
                REDELIVERY_LIMIT,
                f"delivered {delivery} times, more than {policy.max_deliveries}",
                delivery,
            )
            return
        try:
            event = model.model_validate_json(message.body)
        except ValidationError as exc:
            await park(message, INVALID, f"invalid {model.message_type()}: {exc}", delivery)
            return
        try:
            await handler(event, message)
        except PoisonMessage as exc:
            await park(message, REJECTED, str(exc), delivery)
        except Exception as exc:
            if is_transient(exc):
                await hand_back(message, delivery, repr(exc))
            else:
                log.error("handler failed", queue=queue.name, error=repr(exc))
                await park(message, FAILED, f"{type(exc).__name__}: {exc}", delivery)
        else:
            counter.done(message)
            if not message.processed:
                await message.ack()

    return await queue.consume(on_message)


async def queue_depth(channel: AbstractChannel, name: str) -> int:
    """Messages ready in ``name`` (passive declare; 0 when the queue does not exist)."""
    try:
        queue = await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return 0
    return int(queue.declaration_result.message_count or 0)
