"""The sender's broker input: send chunks, lifecycle and tenant events; and its pause output."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from services.sender import queries
from services.sender.directory import Directory, TenantNotFound
from services.sender.engine import SendEngine
from services.sender.gate import INSUFFICIENT_CREDITS, CampaignGate
from services.sender.metrics import AUTO_PAUSES, CHUNKS_IN_FLIGHT
from services.sender.wake_lateness import WakeLateness
from shared import topology
from shared.broker import BrokerUnavailable, PoisonMessage, Publisher, consume
from shared.db import AllTenants
from shared.events import CampaignCommand, CampaignLifecycle, ChunkDone, SendChunk, TenantChanged
from shared.logging import get_logger

log = get_logger(__name__)

# A campaign not seen in a chunk for this long is no longer polled.
ACTIVE_FOR_S = 60.0
CREDITS_ASK_EVERY_S = 5.0


class InFlight:
    """Counts chunks being handled, so a graceful stop can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self._idle.clear()
        CHUNKS_IN_FLIGHT.inc()

    def __exit__(self, *_: object) -> None:
        self.count -= 1
        CHUNKS_IN_FLIGHT.dec()
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


async def consume_chunks(
    queue: AbstractQueue,
    engine: SendEngine,
    publisher: Publisher,
    in_flight: InFlight,
    wake_lateness: WakeLateness,
) -> str:
    async def handle(chunk: SendChunk, reply_to: str | None) -> bool:
        with in_flight:
            return await engine.handle(chunk, reply_to)

    async def on_chunk(chunk: SendChunk, message: AbstractIncomingMessage) -> None:
        # Shielded: when the delivery is cancelled (its channel or connection dropped), the chunk's
        # claimed rows are still sent or handed back and recorded, never left ``sending`` to wait
        # out their lease and two lookups; the broker redelivers the chunk, whose rows are then
        # no longer claimable.
        header = (message.headers or {}).get(ChunkDone.REPLY_HEADER)
        work = asyncio.ensure_future(handle(chunk, header if isinstance(header, str) else None))
        try:
            done = await asyncio.shield(work)
        except asyncio.CancelledError:
            work.add_done_callback(_report_orphaned_failure)
            raise
        except TenantNotFound as exc:
            raise PoisonMessage(f"unknown tenant {exc}") from exc
        if not done:
            await message.nack(requeue=True)
            return
        await acknowledge_chunk(publisher, chunk, message, wake_lateness)

    return await consume(queue, SendChunk, on_chunk, publisher)


def _report_orphaned_failure(work: asyncio.Future[bool]) -> None:
    if not work.cancelled() and work.exception() is not None:
        log.warning("chunk failed after its delivery was cancelled", error=repr(work.exception()))


async def acknowledge_chunk(
    publisher: Publisher, chunk: SendChunk, message: AbstractIncomingMessage, wake_lateness: WakeLateness
) -> None:
    """Tell the dispatcher that handed the chunk out that it is done (when it asked to know), with
    the late tolerance this sender's wake-ups ask for (``services.sender.wake_lateness``)."""
    headers = message.headers or {}
    reply_to, chunk_id = headers.get(ChunkDone.REPLY_HEADER), headers.get(ChunkDone.CHUNK_HEADER)
    if not isinstance(reply_to, str) or not isinstance(chunk_id, str):
        return
    try:
        # Not mandatory: a dispatcher that has gone away no longer has its reply queue.
        await publisher.publish(
            "",
            reply_to,
            ChunkDone(
                tenant_id=chunk.tenant_id,
                chunk_id=chunk_id,
                woke_late_s=min(wake_lateness.tolerance_s(), 3600.0),
            ),
            mandatory=False,
        )
    except BrokerUnavailable as exc:
        log.debug("chunk acknowledgement lost", error=str(exc))


async def consume_events(channel: AbstractChannel, gate: CampaignGate, directory: Directory) -> AbstractQueue:
    """A private queue of lifecycle and tenant events: pauses reach this sender at once."""
    name = topology.private_queue_name("sender", uuid.uuid4().hex[:12], "events")
    queue = await topology.declare_private_queue(channel, name)
    for routing_key in CampaignLifecycle.ROUTING_KEYS:
        await queue.bind(topology.EVENTS_EXCHANGE, routing_key=routing_key)
    await queue.bind(topology.EVENTS_EXCHANGE, routing_key=TenantChanged.ROUTING_KEY)

    async def on_event(message: AbstractIncomingMessage) -> None:
        # A notification on a private queue: an unreadable one is dropped, never redelivered forever.
        async with message.process(requeue=False, ignore_processed=True):
            try:
                if message.routing_key == TenantChanged.ROUTING_KEY:
                    directory.invalidate(TenantChanged.model_validate_json(message.body).tenant_id)
                else:
                    event = CampaignLifecycle.model_validate_json(message.body)
                    gate.observe(event.campaign_id, event.gate_state, event.reason)
            except ValidationError as exc:
                log.warning("unreadable event dropped", routing_key=message.routing_key, error=str(exc)[:300])

    await queue.consume(on_event)
    return queue


class AutoPauser:
    """Stops a campaign in this sender at once and asks the segmenter to pause it for everyone."""

    def __init__(self, gate: CampaignGate, publisher: Publisher) -> None:
        self._gate = gate
        self._publisher = publisher
        self._asked: dict[UUID, float] = {}

    async def __call__(self, tenant_id: UUID, campaign_id: UUID, reason: str) -> None:
        now = time.monotonic()
        if reason == INSUFFICIENT_CREDITS:
            # No local block: claims already stop at the balance, and the messages claimed hold
            # their credits. Ask again at most every few seconds while chunks keep arriving.
            if now - self._asked.get(campaign_id, -CREDITS_ASK_EVERY_S) < CREDITS_ASK_EVERY_S:
                return
            self._asked[campaign_id] = now
        elif not self._gate.auto_pause(campaign_id, now):
            return
        log.warning(
            "campaign auto-paused", tenant_id=str(tenant_id), campaign_id=str(campaign_id), reason=reason
        )
        AUTO_PAUSES.labels(str(tenant_id), reason).inc()
        command = CampaignCommand(tenant_id=tenant_id, campaign_id=campaign_id, reason=reason)
        try:
            await self._publisher.publish(topology.COMMANDS_EXCHANGE, "campaign.pause", command)
        except BrokerUnavailable as exc:
            # The local pause holds; when it lapses the next failing chunk asks again.
            log.error("pause command not published", campaign_id=str(campaign_id), error=str(exc))


class HoldAnnouncer:
    """Tells dispatchers, senders and anyone following that a campaign holds (the claim that found
    no room in its tenant's messaging limit, or a spam refusal, set the hold)."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    async def __call__(self, tenant_id: UUID, campaign_id: UUID, reason: str, until: datetime) -> None:
        event = CampaignLifecycle(
            event="held",
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            state="running",
            reason=reason,
            at=datetime.now(UTC),
            until=until,
        )
        try:
            await self._publisher.publish(
                topology.EVENTS_EXCHANGE, event.routing_key(), event, mandatory=False
            )
        except BrokerUnavailable as exc:
            # The hold is in the database: gates see it at their next poll.
            log.warning("hold event not published", campaign_id=str(campaign_id), error=str(exc))


async def poll_gate(pool: asyncpg.Pool, engine: SendEngine, gate: CampaignGate, interval_s: float) -> None:
    """Re-read the states of the campaigns being sent: the database has the last word on pauses."""
    while True:
        now = time.monotonic()
        for campaign_id, seen in list(engine.active.items()):
            if now - seen > ACTIVE_FOR_S:
                del engine.active[campaign_id]
        gate.expire(now)
        watched = set(engine.active) | gate.locally_paused
        gate.prune(watched)
        if watched:
            try:
                # Campaigns of every tenant this sender works for: a cross-tenant read.
                for row in await AllTenants(pool).fetch(queries.CAMPAIGN_STATES, list(watched)):
                    gate.observe(row["id"], row["state"], row["pause_reason"])
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("campaign state poll failed", error=repr(exc))
        await asyncio.sleep(interval_s)
