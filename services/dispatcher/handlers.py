"""The dispatcher's broker input: every tenant's dispatch queue, lifecycle and tenant events,
chunk acknowledgements from senders; and the periodic re-read of rates and campaign states."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from services.dispatcher import queries
from services.dispatcher.scheduler import CampaignStates, Dispatcher, Publish
from shared import topology
from shared.broker import PoisonMessage, Publisher, consume
from shared.events import CampaignLifecycle, ChunkDone, RecipientBatch, SendChunk, TenantChanged
from shared.logging import get_logger

log = get_logger(__name__)


def chunk_publisher(publisher: Publisher) -> Publish:
    async def publish(chunk: SendChunk, headers: dict[str, Any] | None) -> None:
        await publisher.publish(topology.SEND_EXCHANGE, topology.SEND_ROUTING_KEY, chunk, headers=headers)

    return publish


class TenantConsumers:
    """One consumer per tenant dispatch queue. The queues are single-active-consumer, so with
    several dispatchers each tenant is served by one of them at a time."""

    def __init__(self, channel: AbstractChannel, dispatcher: Dispatcher, publisher: Publisher) -> None:
        self._channel = channel
        self._dispatcher = dispatcher
        self._publisher = publisher
        self._queues: dict[UUID, AbstractQueue] = {}
        self._lock = asyncio.Lock()

    async def ensure(self, tenant_id: UUID, rate: int | None) -> None:
        self._dispatcher.set_rate(tenant_id, rate)
        async with self._lock:
            if tenant_id in self._queues:
                return
            queue = await topology.declare_tenant(self._channel, str(tenant_id))

            async def on_batch(batch: RecipientBatch, message: AbstractIncomingMessage) -> None:
                if batch.tenant_id != tenant_id:
                    raise PoisonMessage(
                        f"batch of tenant {batch.tenant_id} on the queue of tenant {tenant_id}"
                    )
                await self._dispatcher.dispatch(batch)

            await consume(queue, RecipientBatch, on_batch, self._publisher)
            self._queues[tenant_id] = queue
            log.info("dispatching tenant", tenant_id=str(tenant_id), rate=rate)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        for row in await pool.fetch(queries.TENANTS):
            await self.ensure(row["id"], row["rate_per_second"])


async def consume_events(
    channel: AbstractChannel,
    name: str,
    pool: asyncpg.Pool,
    consumers: TenantConsumers,
    campaigns: CampaignStates,
) -> AbstractQueue:
    """Lifecycle events stop a paused campaign's batches at once; tenant events apply a new rate
    (or a new tenant) without waiting for the periodic re-read."""
    queue = await topology.declare_private_queue(channel, name)
    for routing_key in CampaignLifecycle.ROUTING_KEYS:
        await queue.bind(topology.EVENTS_EXCHANGE, routing_key=routing_key)
    await queue.bind(topology.EVENTS_EXCHANGE, routing_key=TenantChanged.ROUTING_KEY)

    async def on_event(message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=False, ignore_processed=True):
            try:
                if message.routing_key == TenantChanged.ROUTING_KEY:
                    changed = TenantChanged.model_validate_json(message.body)
                    await consumers.ensure(changed.tenant_id, changed.rate_per_second)
                else:
                    event = CampaignLifecycle.model_validate_json(message.body)
                    campaigns.observe(event.campaign_id, event.gate_state)
            except ValidationError as exc:
                log.warning("unreadable event dropped", routing_key=message.routing_key, error=str(exc)[:300])

    await queue.consume(on_event)
    return queue


async def consume_acknowledgements(
    channel: AbstractChannel, name: str, dispatcher: Dispatcher, publisher: Publisher
) -> AbstractQueue:
    """Chunk acknowledgements (the in-flight bound of unlimited tenants) and recipients a sender
    came too late for: given the next free slots here when this dispatcher owns the tenant's
    slots, else put back into the tenant's dispatch queue for the dispatcher that does."""
    queue = await topology.declare_private_queue(channel, name)
    reslots: set[asyncio.Task[None]] = set()

    async def reslot(done: ChunkDone) -> None:
        assert done.campaign_id is not None
        try:
            if dispatcher.owns_slots(done.tenant_id):
                await dispatcher.reslot(done.tenant_id, done.campaign_id, done.late_ids)
                return
            batch = RecipientBatch(
                tenant_id=done.tenant_id, campaign_id=done.campaign_id, recipient_ids=done.late_ids
            )
            await publisher.publish(topology.RECIPIENTS_EXCHANGE, str(done.tenant_id), batch)
        except Exception as exc:
            # The rows wait as queued; the sweeper publishes them again.
            log.warning("late recipients not re-slotted", tenant_id=str(done.tenant_id), error=repr(exc))

    async def on_done(message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=False, ignore_processed=True):
            try:
                done = ChunkDone.model_validate_json(message.body)
            except ValidationError:
                return
            if done.arrived_late_s or done.woke_late_s:
                dispatcher.timing.observe(
                    time.time(), arrived_late_s=done.arrived_late_s, woke_late_s=done.woke_late_s
                )
            if done.late_ids and done.campaign_id is not None:
                # Off the consumer: a re-slot may wait a lead for its later chunks.
                task = asyncio.create_task(reslot(done))
                reslots.add(task)
                task.add_done_callback(reslots.discard)
            else:
                dispatcher.chunk_done(done.tenant_id, done.chunk_id)

    await queue.consume(on_done, no_ack=False)
    return queue


async def refresh_loop(
    pool: asyncpg.Pool, consumers: TenantConsumers, campaigns: CampaignStates, interval_s: float
) -> None:
    """Rates and campaign states from the database, in case an event was missed."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await consumers.refresh(pool)
            await campaigns.refresh()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("refresh failed", error=repr(exc))
