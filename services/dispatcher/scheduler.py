"""Turning a tenant's recipient batches into send chunks at the tenant's rate.

Each tenant has a lane: its rate, its slot clock and a lock, so one tenant's batches are handled
in order while other tenants' lanes run independently. A rate-limited lane hands out a chunk only
when its first slot lies within ``lead_s`` of now; the send queue therefore holds at most a lead
of each tenant's work, and a large campaign of one tenant never sits in front of another's.
An unlimited lane has no slots; it is bounded instead by how many of its chunks are in flight
(senders acknowledge each chunk to the lane's dispatcher), for the same reason.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from services.dispatcher import queries
from services.dispatcher.metrics import (
    BATCHES_DROPPED,
    CHUNKS_DISPATCHED,
    CHUNKS_OUTSTANDING,
    DISPATCH_LEAD,
    LATE_TOLERANCE,
    RECIPIENTS_DISPATCHED,
    RESLOTTED,
    TENANT_RATE,
)
from shared.db import AllTenants
from shared.events import HELD, ChunkDone, RecipientBatch, SendChunk
from shared.metrics import EFFECTIVE_RATE
from shared.pacing import Pacing, effective_rate
from shared.single_flight import SingleFlight
from shared.throttle import MAX_CHUNK_SPAN_S, AdaptiveTiming, SlotClock, chunk_length, slot_interval

Publish = Callable[[SendChunk, dict[str, Any] | None], Awaitable[None]]

SENDABLE = "running"
# Campaign states not asked about for this long are forgotten (re-read on the next batch).
CAMPAIGN_TTL_S = 300.0
# Back-off records are re-read at most this often (a chunk spans up to 0.25 s).
PACING_TTL_S = 0.2
# For this long after it starts or reconnects, a dispatcher has not heard how late chunks run
# (the timing reports come about its own chunks): a tenant's first slots then start a maximum
# lead out, beyond any slot a dispatcher it takes over from may have handed out.
TIMING_UNKNOWN_S = 30.0
# A re-slot's first slot lies at least this share of the configured lead from now: time enough for
# its chunk to reach a sender and be claimed (on a busy 2-core machine 30-75 ms at the 99th
# percentile, against a 250 ms lead; a rarer stall costs only the re-slotted messages' slots),
# while a re-slot a whole lead out opened a gap in the tenant's slots each time the dispatcher
# ran a little behind them (1-3 ms each, 20-50 ms of a busy 400/s campaign).
RESLOT_LEAD_SHARE = 0.5


@dataclass(frozen=True)
class DispatchSettings:
    chunk_size: int
    unlimited_chunk_size: int
    margin: float
    lead_s: float
    unlimited_inflight_chunks: int
    feedback_timeout_s: float
    reply_queue: str
    # Fraction of the configured rate a backed-off tenant regains per second.
    pacing_recovery_per_s: float = 0.02
    late_tolerance_s: float = 0.008
    max_lead_s: float = 1.0
    max_late_tolerance_s: float = 0.1


class Lane:
    def __init__(self, tenant_id: UUID, rate: int | None) -> None:
        self.tenant_id = tenant_id
        self.rate = rate
        self.clock = SlotClock()
        # One batch at a time, in order.
        self.lock = asyncio.Lock()
        # Held by whoever hands out slots (a batch's chunk, or a re-slot's chunks together), from
        # the wait for the clock to come within a lead of now until the chunk has its slots.
        self.slots = asyncio.Lock()
        self.outstanding: dict[str, float] = {}
        self._room = asyncio.Event()

    def sent(self, chunk_id: str, expires_at: float) -> None:
        self.outstanding[chunk_id] = expires_at
        CHUNKS_OUTSTANDING.labels(str(self.tenant_id)).set(len(self.outstanding))

    def done(self, chunk_id: str) -> None:
        if self.outstanding.pop(chunk_id, None) is not None:
            CHUNKS_OUTSTANDING.labels(str(self.tenant_id)).set(len(self.outstanding))
            self._room.set()

    async def wait_for_room(self, limit: int) -> None:
        while True:
            now = time.monotonic()
            for chunk_id, expires_at in list(self.outstanding.items()):
                if expires_at < now:
                    # Its sender died before acknowledging: stop counting it.
                    del self.outstanding[chunk_id]
            if len(self.outstanding) < limit:
                return
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), 1.0)
            except TimeoutError:
                pass


class CampaignStates:
    """Which campaigns are running, from lifecycle events and a periodic read of the database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._states: dict[UUID, str] = {}
        self._asked: dict[UUID, float] = {}

    def observe(self, campaign_id: UUID, state: str) -> None:
        if campaign_id in self._states:
            self._states[campaign_id] = state

    async def running(self, campaign_id: UUID) -> bool:
        self._asked[campaign_id] = time.monotonic()
        state = self._states.get(campaign_id)
        # A held campaign's batch is most likely the one its hold's end publishes, which can
        # overtake the event saying so: the database says whether it still holds.
        if state is None or state == HELD:
            rows = await AllTenants(self._pool).fetch(queries.CAMPAIGN_STATES, [campaign_id])
            state = rows[0]["state"] if rows else "missing"
            self._states[campaign_id] = state
        return state == SENDABLE

    def is_running(self, campaign_id: UUID) -> bool:
        return self._states.get(campaign_id) == SENDABLE

    async def refresh(self) -> None:
        cutoff = time.monotonic() - CAMPAIGN_TTL_S
        for campaign_id, asked in list(self._asked.items()):
            if asked < cutoff:
                del self._asked[campaign_id]
                self._states.pop(campaign_id, None)
        if self._states:
            for row in await AllTenants(self._pool).fetch(queries.CAMPAIGN_STATES, list(self._states)):
                self._states[row["id"]] = row["state"]


class PacingView(Protocol):
    async def current(self, tenant_id: UUID) -> Pacing | None: ...


class PacingRecords:
    """Tenants' back-off records from the database, re-read at most every ``PACING_TTL_S``: all
    tenants' in one query (those still in force), so a dispatcher handing out chunks to many
    tenants at once reads them a few times a second, not once per chunk of each."""

    def __init__(self, pool: asyncpg.Pool, recovery_per_s: float) -> None:
        self._pool = pool
        # A back-off has recovered fully within 1 / recovery_per_s; twice that allows for clocks
        # that differ. Older records change no rate (and a tenant without one has its own rate).
        self._in_force_s = 2.0 / recovery_per_s if recovery_per_s > 0 else None
        self._records: dict[UUID, Pacing] = {}
        self._read_at = -math.inf
        self._reads: SingleFlight[None, None] = SingleFlight()

    async def current(self, tenant_id: UUID) -> Pacing | None:
        if time.monotonic() - self._read_at >= PACING_TTL_S:
            await self._reads.run(None, self._read)
        return self._records.get(tenant_id)

    async def _read(self) -> None:
        read_at = time.monotonic()
        rows = await AllTenants(self._pool).fetch(queries.PACING_IN_FORCE, self._in_force_s)
        self._records = {
            row["tenant_id"]: Pacing(row["factor"], row["changed_at"], row["hold_until"]) for row in rows
        }
        self._read_at = read_at


class NoPacing:
    async def current(self, tenant_id: UUID) -> Pacing | None:
        return None


class CampaignView(Protocol):
    async def running(self, campaign_id: UUID) -> bool: ...

    def is_running(self, campaign_id: UUID) -> bool: ...


class Dispatcher:
    def __init__(
        self,
        settings: DispatchSettings,
        campaigns: CampaignView,
        publish: Publish,
        pacing: PacingView | None = None,
    ) -> None:
        self._settings = settings
        self._campaigns = campaigns
        self._publish = publish
        self._pacing: PacingView = pacing or NoPacing()
        self._lanes: dict[UUID, Lane] = {}
        # One for the dispatcher, not per tenant: how late chunks and wake-ups run is the
        # machine's and the broker's doing, whatever the tenant.
        self.timing = AdaptiveTiming(
            settings.lead_s,
            settings.late_tolerance_s,
            max_lead_s=max(settings.max_lead_s, settings.lead_s),
            max_tolerance_s=max(settings.max_late_tolerance_s, settings.late_tolerance_s),
        )
        self._timing_known_at = time.monotonic() + TIMING_UNKNOWN_S

    def lane(self, tenant_id: UUID) -> Lane:
        lane = self._lanes.get(tenant_id)
        if lane is None:
            lane = self._lanes[tenant_id] = Lane(tenant_id, None)
        return lane

    def set_rate(self, tenant_id: UUID, rate: int | None) -> None:
        """Takes effect for the next chunk of the tenant."""
        self.lane(tenant_id).rate = rate
        TENANT_RATE.labels(str(tenant_id)).set(rate or 0)

    def restart_clocks(self) -> None:
        """After a reconnect this dispatcher may be a tenant's new active consumer: start its slots
        beyond any a previous active dispatcher may have handed out."""
        for lane in self._lanes.values():
            lane.clock.started = False
        self._timing_known_at = time.monotonic() + TIMING_UNKNOWN_S

    def chunk_done(self, tenant_id: UUID, chunk_id: str) -> None:
        lane = self._lanes.get(tenant_id)
        if lane is not None:
            lane.done(chunk_id)

    async def dispatch(self, batch: RecipientBatch) -> int:
        """Publish the batch's recipients as chunks at the tenant's rate; return how many were
        given a slot (0 when the campaign is not running: the batch is dropped, and the
        segmenter publishes what is left again when the campaign resumes)."""
        lane = self.lane(batch.tenant_id)
        tenant = str(batch.tenant_id)
        async with lane.lock:
            if not await self._campaigns.running(batch.campaign_id):
                BATCHES_DROPPED.labels(tenant).inc()
                return 0
            ids = sorted(set(batch.recipient_ids))
            done = 0
            while done < len(ids):
                if not self._campaigns.is_running(batch.campaign_id):
                    BATCHES_DROPPED.labels(tenant).inc()
                    break
                if lane.rate is None:
                    count = await self._unlimited_chunk(
                        lane, batch, ids[done : done + self._settings.unlimited_chunk_size]
                    )
                else:
                    count = await self._limited_chunk(lane, batch, ids[done:])
                done += count
                CHUNKS_DISPATCHED.labels(tenant).inc()
                RECIPIENTS_DISPATCHED.labels(tenant).inc(count)
            return done

    async def _limited_chunk(self, lane: Lane, batch: RecipientBatch, remaining: list[int]) -> int:
        assert lane.rate is not None
        if not lane.clock.started:
            lane.clock.start(time.time(), lead_s=self._start_lead_s(), span_s=MAX_CHUNK_SPAN_S)
        # Waited for outside the lane's slots too, so a re-slot that comes meanwhile goes first.
        await self._within_lead(lane)
        async with lane.slots:
            return await self._slotted_chunk(lane, batch.campaign_id, remaining, earliest_s=0.0)

    def _start_lead_s(self) -> float:
        """How far out a tenant's first slots on this dispatcher start: beyond the slots another
        dispatcher may have handed out before this one became the tenant's active consumer. Its lead
        was stretched by the same machine's lateness that stretches this one's (every tenant's
        chunks go through the same senders); while this one has not been up long enough to have
        heard of any, as far as a lead may go. Between two dispatchers whose tenants run late
        differently the first slots may come up to the difference of their leads too early."""
        if time.monotonic() < self._timing_known_at:
            return self.timing.max_lead_s
        return self.timing.lead_s(time.time())

    async def _within_lead(self, lane: Lane) -> None:
        now = time.time()
        wait = lane.clock.wait_s(now, self.timing.lead_s(now))
        if wait > 0:
            await asyncio.sleep(wait)

    async def _slotted_chunk(
        self, lane: Lane, campaign_id: UUID, remaining: list[int], *, earliest_s: float
    ) -> int:
        """Hand out the next chunk of ``remaining`` at the tenant's effective rate, once its first
        slot lies within a lead of now, and ``earliest_s`` from now at the earliest; return how
        many recipients it took. Call holding ``lane.slots``: slots then never lie more than a
        lead plus a chunk ahead, which a dispatcher taking the tenant over relies on."""
        await self._within_lead(lane)
        # Read the rate after the wait: a change made meanwhile applies to this chunk already.
        rate = await self._effective_rate(lane)
        now = time.time()
        tolerance = self.timing.tolerance_s(now)
        LATE_TOLERANCE.set(tolerance)
        DISPATCH_LEAD.set(self.timing.lead_s(now))
        interval = slot_interval(rate, self.timing.margin(self._settings.margin, now))
        ids = remaining[: chunk_length(interval, self._settings.chunk_size)]
        first = lane.clock.allocate(len(ids), interval, time.time() + earliest_s, tolerance)
        await self._publish_slotted(lane.tenant_id, campaign_id, ids, first, interval, tolerance)
        return len(ids)

    async def _publish_slotted(
        self,
        tenant_id: UUID,
        campaign_id: UUID,
        ids: list[int],
        first: float,
        interval: float,
        tolerance: float,
    ) -> None:
        chunk = SendChunk(
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            recipient_ids=ids,
            first_slot_at=first,
            interval_s=interval,
            late_tolerance_s=tolerance,
        )
        # The sender hands recipients it came too late for back here, for the next free slots.
        # No chunk id: slots bound a limited lane, so its chunks need no acknowledgement.
        await self._publish(chunk, {ChunkDone.REPLY_HEADER: self._settings.reply_queue})

    def owns_slots(self, tenant_id: UUID) -> bool:
        """Whether this dispatcher hands out the tenant's slots: it has dispatched a batch of the
        tenant since it last (re)connected, so it is the tenant's active consumer. Only then may
        it give out slots outside a batch; another dispatcher may be active meanwhile."""
        lane = self._lanes.get(tenant_id)
        return lane is not None and lane.clock.started

    async def reslot(self, tenant_id: UUID, campaign_id: UUID, ids: list[int]) -> int:
        """Give recipients a sender came too late for the tenant's next free slots, now: ahead of
        the batches still waiting in the dispatch queue, never closer than the rate allows, and
        like every chunk no more than a lead ahead. Call only when ``owns_slots``. Returns how
        many were given a slot (0 when the campaign is not running: like a dropped batch, they
        are published again when it resumes)."""
        lane = self.lane(tenant_id)
        if not ids or not await self._campaigns.running(campaign_id):
            return 0
        if lane.rate is None:
            chunk = SendChunk(tenant_id=tenant_id, campaign_id=campaign_id, recipient_ids=ids)
            await self._publish(chunk, None)
            return len(ids)
        start = 0
        # The recipients' chunks follow one another, ahead of the batch's next chunk.
        async with lane.slots:
            while start < len(ids):
                # Part of the configured lead from now at the earliest (``RESLOT_LEAD_SHARE``), so
                # the chunk reaches a sender before its first slot. Not the stretched lead: the
                # lane's next slot lies a configured lead out until chunks are handed out further
                # ahead, so a re-slot right after the lead stretched (when chunks run late, and
                # messages are handed back) would leave the tenant's slots up to the stretched
                # lead unused (0.25 s of a busy 400/s campaign, measured). Should its chunk still
                # come late, only its own messages lose their slots.
                start += await self._slotted_chunk(
                    lane, campaign_id, ids[start:], earliest_s=self._settings.lead_s * RESLOT_LEAD_SHARE
                )
        RESLOTTED.labels(str(tenant_id)).inc(len(ids))
        return len(ids)

    async def _effective_rate(self, lane: Lane) -> float:
        """The tenant's configured rate as backed off after Twilio's refusals; a Retry-After hold
        is waited out here, and slots resume from its end."""
        pacing = await self._pacing.current(lane.tenant_id)
        if pacing is not None and pacing.hold_until is not None:
            hold_s = (pacing.hold_until - datetime.now(UTC)).total_seconds()
            if hold_s > 0:
                await asyncio.sleep(hold_s)
                lane.clock.next_slot_at = max(lane.clock.next_slot_at, time.time())
        rate = effective_rate(lane.rate or 1, pacing, datetime.now(UTC), self._settings.pacing_recovery_per_s)
        EFFECTIVE_RATE.labels(str(lane.tenant_id)).set(rate)
        return rate

    async def _unlimited_chunk(self, lane: Lane, batch: RecipientBatch, ids: list[int]) -> int:
        await lane.wait_for_room(self._settings.unlimited_inflight_chunks)
        chunk_id = uuid.uuid4().hex
        chunk = SendChunk(tenant_id=batch.tenant_id, campaign_id=batch.campaign_id, recipient_ids=ids)
        headers = {ChunkDone.REPLY_HEADER: self._settings.reply_queue, ChunkDone.CHUNK_HEADER: chunk_id}
        lane.sent(chunk_id, time.monotonic() + self._settings.feedback_timeout_s)
        try:
            await self._publish(chunk, headers)
        except Exception:
            lane.done(chunk_id)
            raise
        return len(ids)
