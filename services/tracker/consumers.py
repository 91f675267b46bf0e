"""Broker input of the tracker: the batched status-callback consumer and the inbound consumer.

Status callbacks are collected until ``batch_size`` are waiting or ``flush_s`` has passed since
the first, written in one transaction, and only then acknowledged (one multiple-ack for the
batch). A database outage keeps the batch in hand and retries it; a batch the database refuses
for its data is split so that only the offending callback is parked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiormq
import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from services.tracker.callbacks import BatchResult, record_callbacks
from services.tracker.inbound import InvalidInbound, record_inbound
from services.tracker.keywords import Action
from services.tracker.refusals import publish_retries
from services.tracker.status import DEFAULT_WAITS, Callback, RefusalWaits, dedupe_key
from services.tracker.wire import MESSAGE_TYPE, decode_batch
from shared.broker import (
    FAILED,
    INVALID,
    REDELIVERY_LIMIT,
    BrokerUnavailable,
    ConsumerPolicy,
    DeliveryCounter,
    PoisonMessage,
    Publisher,
    consume,
    expose_parked_series,
)
from shared.events import InboundMessage
from shared.failures import is_transient
from shared.logging import get_logger
from shared.metrics import (
    CALLBACK_LAG,
    CALLBACK_REPLAYS,
    CALLBACKS,
    INBOUND_MESSAGES,
    ORPHAN_CALLBACKS,
    SUPPRESSION_CHANGES,
    TWILIO_ERRORS,
)

log = get_logger(__name__)


@dataclass(slots=True)
class _Item:
    key: str
    callback: Callback
    delivery: _Delivery


@dataclass
class _Delivery:
    message: AbstractIncomingMessage
    items: list[_Item] = field(default_factory=list)
    # Why the message is parked instead of written (a reason code and the error), if it is.
    reason: str | None = None
    error: str = ""
    delivery_count: int = 1


def _decode(message: AbstractIncomingMessage, counter: DeliveryCounter, max_deliveries: int) -> _Delivery:
    delivery = _Delivery(message, delivery_count=counter.delivery(message))
    if delivery.delivery_count > max_deliveries:
        delivery.reason = REDELIVERY_LIMIT
        delivery.error = f"delivered {delivery.delivery_count} times, more than {max_deliveries}"
        return delivery
    try:
        received = decode_batch(message.body)
    except ValidationError as exc:
        delivery.reason, delivery.error = INVALID, f"invalid {MESSAGE_TYPE}: {exc}"
        return delivery
    for tenant_id, params, idempotency_token, received_at in received:
        callback = Callback.from_params(tenant_id, params, received_at)
        if callback is None:
            # The webhook refuses these; one can only come from another publisher.
            log.warning("status callback without MessageSid or MessageStatus skipped", tenant_id=tenant_id)
            continue
        key = dedupe_key(callback.message_sid, callback.status, idempotency_token)
        delivery.items.append(_Item(key, callback, delivery))
    return delivery


class StatusConsumer:
    def __init__(
        self,
        queue: AbstractQueue,
        pool: asyncpg.Pool,
        publisher: Publisher,
        *,
        batch_size: int,
        flush_s: float,
        retry_delay_s: float = 1.0,
        policy: ConsumerPolicy | None = None,
        waits: RefusalWaits = DEFAULT_WAITS,
    ) -> None:
        self._queue = queue
        self._waits = waits
        self._pool = pool
        self._publisher = publisher
        self._batch_size = batch_size
        self._flush_s = flush_s
        self._retry_delay_s = retry_delay_s
        self._policy = policy or ConsumerPolicy()
        self._counter = DeliveryCounter()
        self._buffer: list[_Delivery] = []
        self._buffered = 0
        self._waiting = asyncio.Event()
        self._full = asyncio.Event()
        self._tag: str | None = None

    async def start(self) -> None:
        """Take deliveries; ``run_batches`` (a supervised task) writes them."""
        expose_parked_series(self._queue.name)
        self._tag = await self._queue.consume(self._on_message)

    async def stop(self) -> None:
        """Stop taking deliveries; messages not yet written go back to the queue with the channel."""
        if self._tag is not None:
            await self._queue.cancel(self._tag)
            self._tag = None

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Nothing is awaited here, so the buffer keeps the delivery order the batch's single
        # multiple-ack relies on.
        delivery = _decode(message, self._counter, self._policy.max_deliveries)
        self._buffer.append(delivery)
        self._buffered += len(delivery.items)
        self._waiting.set()
        if self._buffered >= self._batch_size:
            self._full.set()

    async def run_batches(self) -> None:
        """Forever: take the next batch when it is full or ``flush_s`` old, and write it."""
        while True:
            await self._waiting.wait()
            if self._buffered < self._batch_size:
                try:
                    await asyncio.wait_for(self._full.wait(), self._flush_s)
                except TimeoutError:
                    pass
            deliveries = self._take()
            if deliveries:
                await self._process(deliveries)

    def _take(self) -> list[_Delivery]:
        taken: list[_Delivery] = []
        count = 0
        while self._buffer and (not taken or count + len(self._buffer[0].items) <= self._batch_size):
            delivery = self._buffer.pop(0)
            taken.append(delivery)
            count += len(delivery.items)
        self._buffered -= count
        if self._buffered < self._batch_size:
            self._full.clear()
        if not self._buffer:
            self._waiting.clear()
        return taken

    async def _process(self, deliveries: list[_Delivery]) -> None:
        try:
            for delivery in deliveries:
                if delivery.reason is not None:
                    await self._park(delivery)
            await self._write([item for delivery in deliveries for item in delivery.items])
            await deliveries[-1].message.ack(multiple=True)
        except (aiormq.exceptions.AMQPError, BrokerUnavailable, ConnectionError, RuntimeError) as exc:
            # The channel went away: these deliveries come again and their receipts dedupe them.
            log.warning("status batch not acknowledged, broker will redeliver", error=repr(exc))
        except Exception:
            # Unforeseen: hand the batch back (counted, so a message that always breaks it is
            # parked in the end) rather than hold it unacknowledged or stop consuming.
            log.exception("status batch failed, handed back")
            for delivery in deliveries:
                self._counter.handed_back(delivery.message, delivery.delivery_count)
            try:
                await deliveries[-1].message.nack(multiple=True, requeue=True)
            except Exception as exc:
                log.warning("status batch not handed back, broker will redeliver", error=repr(exc))

    async def _park(self, delivery: _Delivery) -> None:
        assert delivery.reason is not None
        log.warning("status callbacks parked", reason=delivery.reason, error=delivery.error[:300])
        await self._publisher.park(
            delivery.message,
            self._queue.name,
            delivery.reason,
            error=delivery.error,
            delivery_count=delivery.delivery_count,
        )

    async def _write(self, items: Sequence[_Item]) -> None:
        if not items:
            return
        while True:
            try:
                result = await record_callbacks(
                    self._pool, [(item.key, item.callback) for item in items], self._waits
                )
            except Exception as exc:
                if is_transient(exc):
                    # Kept in hand (unacknowledged) until the database takes it.
                    log.warning("status batch not written, retrying", error=repr(exc), size=len(items))
                    await asyncio.sleep(self._retry_delay_s)
                    continue
                if len(items) == 1:
                    delivery = items[0].delivery
                    if delivery.reason is None:
                        delivery.reason, delivery.error = FAILED, f"refused by the database: {exc!r}"
                        await self._park(delivery)
                    return
                # Find the callback the database refuses; the others go through on their own.
                for item in items:
                    await self._write([item])
                return
            _observe(result, items)
            await publish_retries(self._publisher, result.deferred, self._waits)
            return


def _observe(result: BatchResult, items: Sequence[_Item]) -> None:
    for status, count in result.statuses.items():
        CALLBACKS.labels(status).inc(count)
    for code, count in result.error_codes.items():
        TWILIO_ERRORS.labels(str(code), "callback").inc(count)
    if result.replays:
        CALLBACK_REPLAYS.inc(result.replays)
    if result.orphans:
        ORPHAN_CALLBACKS.inc(result.orphans)
    if result.suppressed:
        SUPPRESSION_CHANGES.labels("added", "error_code").inc(result.suppressed)
    now = time.time()
    for item in items:
        CALLBACK_LAG.observe(max(0.0, now - item.callback.at))


async def start_inbound_consumer(queue: AbstractQueue, pool: asyncpg.Pool, publisher: Publisher) -> str:
    async def handle(event: InboundMessage, message: AbstractIncomingMessage) -> None:
        try:
            result = await record_inbound(
                pool, tenant_id=str(event.tenant_id), params=event.params, received_at=event.received_at
            )
        except InvalidInbound as exc:
            raise PoisonMessage(str(exc)) from exc
        if result.stored:
            INBOUND_MESSAGES.labels(result.action.value if result.action else "none").inc()
        if result.changed:
            change = "added" if result.action is Action.OPT_OUT else "removed"
            SUPPRESSION_CHANGES.labels(change, "inbound").inc()

    return await consume(queue, InboundMessage, handle, publisher)
