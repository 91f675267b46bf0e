"""Sending one chunk: claim, wait for each slot, call Twilio, record the outcomes.

A chunk is claimed in one transaction: rows still claimable move to ``sending`` under a lease
(suppressed numbers to ``suppressed``; credits reserved when they apply). Each message then
starts at a slot of the chunk, no earlier and at most the late tolerance after it; a message
that comes late takes the chunk's next slot that has not passed, and only one left without a
slot, or whose campaign was paused meanwhile, is handed back instead of sent. Calls are shared
across tenants (``services.sender.sharing``). Outcomes of the whole chunk are written together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from uuid import UUID

import asyncpg

from services.sender import queries
from services.sender.directory import Directory, TenantInfo
from services.sender.gate import CampaignGate
from services.sender.metrics import HOLDS, SLOTS_MISSED_AT_WRITE
from services.sender.outcomes import (
    Skip,
    Transition,
    after_attempt,
    outside_window,
    refused_locally,
    skipped,
)
from services.sender.pacer import Pacer
from services.sender.recording import Recorder, Settlement, with_db_retry
from services.sender.sharing import CallSlots, SlotBook
from services.sender.wake_lateness import PacedLateness
from shared import credits, metrics
from shared.clock import Clock
from shared.db import OneTenant, tenant_transaction
from shared.events import SendChunk
from shared.logging import get_logger
from shared.pacing import RATE_LIMIT_CODES
from shared.templating import RecipientData, Template, render
from shared.twilio_client import TwilioClient, TwilioError
from shared.twilio_errors import classify
from shared.webhooks import status_callback_request_url

log = get_logger(__name__)
CREATE_LATENCY = metrics.TWILIO_LATENCY.labels("create")
SEND_STAGE = "send"

# WhatsApp drops messages that wait in Twilio's queue for more than four hours anyway.
VALIDITY_PERIOD_S = 14_400

AutoPause = Callable[[UUID, UUID, str], Awaitable[None]]
# Tells everyone a campaign holds (tenant, campaign, reason, until).
AnnounceHold = Callable[[UUID, UUID, str, datetime], Awaitable[None]]

# A campaign's hold reasons set by the sender (the claim sets "messaging_limit").
SPAM_HOLD_REASON = "spam_rate_limit"
MAX_HOLDS_REMEMBERED = 4096


@dataclass(frozen=True)
class EngineSettings:
    lease_s: float
    late_tolerance_s: float
    twilio_timeout_s: float
    retry_tiers_s: list[int]
    max_attempts: int
    credits_enabled: bool
    public_base_url: str
    # WhatsApp messaging limits: the moving window, how long a spam refusal holds the tenant, the
    # least wait after a pair-rate refusal.
    messaging_window_s: float = 86_400.0
    spam_hold_s: float = 900.0
    pair_rate_retry_s: float = 60.0
    # Share of the concurrent calls that only messages with a slot may take.
    paced_calls_share: float = 0.0


@dataclass(frozen=True)
class Claimed:
    recipient_id: int
    # When the claim was made, as the database recorded it: the claim's identity when settling.
    claimed_at: datetime
    attempts: int
    # Earlier retries that did not count as attempts (Twilio never processed the create).
    deferrals: int
    phone_e164: str
    data: RecipientData


@dataclass(frozen=True)
class Hold:
    """Why a claim left rows of its campaign where they were, and until when."""

    reason: str
    until: datetime


@dataclass(frozen=True)
class Claim:
    rows: list[Claimed]
    short_of_credits: bool = False
    hold: Hold | None = None


@dataclass
class ChunkTiming:
    """How late a rate-limited chunk ran on this sender: reported to its dispatcher."""

    arrived_late_s: float
    # How late each of its messages woke for its slot (and got a call).
    woke_late: list[float] = field(default_factory=list)


def recipient_data(row: asyncpg.Record) -> RecipientData:
    overrides = row["vars"] or {}
    return RecipientData(
        phone_e164=row["phone_e164"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        email=row["email"],
        appointment_starts_at=row["starts_at"],
        service_name=row["service_name"],
        location_name=row["location_name"],
        location_address=row["location_address"],
        staff_name=row["staff_name"],
        appointment_status=row["appointment_status"],
        overrides={k: v for k, v in overrides.items() if isinstance(v, str)}
        if isinstance(overrides, dict)
        else {},
    )


class MessageBudget:
    """A weighted semaphore: an unslotted chunk takes as many units as it has recipients before it
    claims them, so a sender claims only what it can send now. Rows it holds but has not sent
    become ``unknown`` if it dies; rows still in its prefetch are simply redelivered."""

    def __init__(self, units: int) -> None:
        self._free = units
        self._changed = asyncio.Condition()

    async def acquire(self, units: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._free >= units)
            self._free -= units

    async def release(self, units: int) -> None:
        async with self._changed:
            self._free += units
            self._changed.notify_all()


class SendEngine:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        client: TwilioClient,
        directory: Directory,
        gate: CampaignGate,
        recorder: Recorder,
        settings: EngineSettings,
        concurrency: int,
        auto_pause: AutoPause,
        pacer: Pacer,
        clock: Clock | None = None,
        announce_hold: AnnounceHold | None = None,
    ) -> None:
        self._clock = clock or Clock()
        self._pool = pool
        self._client = client
        self._directory = directory
        self._gate = gate
        self._recorder = recorder
        self._settings = settings
        self._calls = CallSlots(concurrency, reserved=int(concurrency * settings.paced_calls_share))
        # Unslotted messages are claimed only as far as the calls they may take: twice those, so
        # that while some chunks are being claimed or settled, others send.
        self._unslotted_calls = concurrency - self._calls.reserved
        self._budget = MessageBudget(2 * self._unslotted_calls)
        self._auto_pause = auto_pause
        self._announce_hold = announce_hold
        self._pacer = pacer
        self._paced_lateness = PacedLateness(settings.late_tolerance_s)
        self._rolled: dict[UUID, date] = {}
        # The last hold seen per campaign, so that each is counted and logged once.
        self._holds: dict[UUID, Hold] = {}
        self.stopping = False
        # Campaigns this sender is working on, with when it last saw a chunk of theirs.
        self.active: dict[UUID, float] = {}

    async def handle(self, chunk: SendChunk, reply_to: str | None = None) -> bool:
        """Process one chunk; False when it should go back to the queue (this sender is stopping).
        ``reply_to`` is the queue of the dispatcher that made the chunk: late messages go there."""
        self.active[chunk.campaign_id] = time.monotonic()
        if self.stopping:
            return False
        # A held campaign's chunk is most likely one its hold's end published again, which can
        # overtake the event saying so: the claim, which reads the campaign, decides.
        if self._gate.blocked(chunk.campaign_id) and not self._gate.held(chunk.campaign_id):
            return True
        tenant = await self._directory.tenant(chunk.tenant_id)
        template = await self._directory.template(chunk.tenant_id, chunk.campaign_id)
        if not tenant.active or template is None:
            return True
        if not self._window_open(tenant):
            # Outside the sending window nothing is claimed: the rows wait, and the segmenter,
            # which holds the campaign within a second, publishes them again when it opens.
            return True
        if chunk.first_slot_at is not None:
            return await self._process(chunk, tenant, template, reply_to)
        # Slotted chunks hold at most a lead of work; unslotted ones wait for room before claiming.
        units = min(len(chunk.recipient_ids), self._unslotted_calls)
        await self._budget.acquire(units)
        try:
            return await self._process(chunk, tenant, template, reply_to)
        finally:
            await self._budget.release(units)

    async def _process(
        self, chunk: SendChunk, tenant: TenantInfo, template: Template, reply_to: str | None
    ) -> bool:
        if self.stopping:
            return False
        # The time a claim's lease runs from is taken before the claim is sent: a process frozen
        # between the claim's commit and reading the clock must not count from after it thawed.
        claim_sent: list[float] = []

        def claim_rows() -> Awaitable[Claim]:
            claim_sent.append(time.monotonic())
            return self._claim(chunk)

        claim = await with_db_retry("claim", claim_rows)
        if claim.hold is not None:
            await self._held(chunk.tenant_id, chunk.campaign_id, claim.hold)
        if claim.short_of_credits:
            await self._auto_pause(chunk.tenant_id, chunk.campaign_id, "insufficient_credits")
        if not claim.rows:
            return True
        claimed_mono = claim_sent[-1]
        slots = {recipient_id: chunk.slot_at(i) for i, recipient_id in enumerate(chunk.recipient_ids)}
        book = None
        timing = None
        if chunk.first_slot_at is not None:
            tolerance = chunk.late_tolerance_s
            book = SlotBook(
                chunk.first_slot_at,
                chunk.interval_s,
                len(chunk.recipient_ids),
                self._settings.late_tolerance_s if tolerance is None else tolerance,
            )
            timing = ChunkTiming(arrived_late_s=max(0.0, time.time() - chunk.first_slot_at))
        settlements = await asyncio.gather(
            *(
                self._send(
                    tenant, template, chunk, row, slots.get(row.recipient_id), book, claimed_mono, timing
                )
                for row in claim.rows
            )
        )
        await self._recorder.settle(chunk.tenant_id, list(settlements), source="sender", reply_to=reply_to)
        if timing is not None and reply_to is not None:
            await self._report_timing(chunk, timing, reply_to)
        await self._after_chunk(chunk, settlements)
        return not any(s.transition.skip is Skip.SHUTDOWN for s in settlements)

    async def _held(self, tenant_id: UUID, campaign_id: UUID, hold: Hold) -> None:
        """Count, log and announce a hold once (the claims of its other chunks see it again)."""
        if self._holds.get(campaign_id) == hold:
            return
        self._holds[campaign_id] = hold
        while len(self._holds) > MAX_HOLDS_REMEMBERED:
            del self._holds[next(iter(self._holds))]
        HOLDS.labels(str(tenant_id), hold.reason).inc()
        log.info(
            "campaign held",
            tenant_id=str(tenant_id),
            campaign_id=str(campaign_id),
            reason=hold.reason,
            until=hold.until.isoformat(),
        )
        if self._announce_hold is not None:
            await self._announce_hold(tenant_id, campaign_id, hold.reason, hold.until)

    async def _hold_tenant(self, tenant_id: UUID, reason: str) -> None:
        """Hold all the tenant's sending (and its running campaigns) for the spam hold."""

        async def hold() -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await OneTenant(self._pool).fetch(
                tenant_id, queries.HOLD_TENANT, tenant_id, reason, self._settings.spam_hold_s
            )
            return rows

        held = await with_db_retry("hold", hold)
        log.warning(
            "tenant's sending held",
            tenant_id=str(tenant_id),
            reason=reason,
            hold_s=self._settings.spam_hold_s,
            campaigns=len(held),
        )
        for row in held:
            await self._held(tenant_id, row["id"], Hold(reason, row["hold_until"]))

    async def _after_chunk(self, chunk: SendChunk, settlements: list[Settlement]) -> None:
        if any(s.transition.hold_tenant for s in settlements):
            await self._hold_tenant(chunk.tenant_id, SPAM_HOLD_REASON)
        if chunk.first_slot_at is not None:
            await self._pace(chunk, settlements)
        if any(s.transition.auth_failure for s in settlements):
            await self._auto_pause(chunk.tenant_id, chunk.campaign_id, "twilio_auth_error")
            return
        attempts = [s.transition.is_error for s in settlements if not s.transition.uncount]
        if attempts and self._gate.record(chunk.campaign_id, attempts):
            await self._auto_pause(chunk.tenant_id, chunk.campaign_id, "error_rate")

    async def _pace(self, chunk: SendChunk, settlements: list[Settlement]) -> None:
        """Tell the tenant's pacing how many creates went out and how many Twilio refused for rate."""
        requested = [s.transition for s in settlements if s.transition.requested]
        if not requested:
            return
        refused = [t for t in requested if t.error_code in RATE_LIMIT_CODES]
        retry_after = max((t.retry_after_s for t in refused if t.retry_after_s is not None), default=None)
        await self._pacer.observe(
            chunk.tenant_id, attempted=len(requested), refused=len(refused), retry_after_s=retry_after
        )

    async def _claim(self, chunk: SendChunk) -> Claim:
        if self._settings.credits_enabled:
            await self._roll_credit_period(chunk.tenant_id)
        tenant = await self._directory.tenant(chunk.tenant_id)
        rows = await self._claim_rows(chunk, locked=tenant.messaging_limit is not None)
        if rows[0]["needs_lock"]:
            # The tenant got a messaging limit since this sender read it.
            self._directory.invalidate(chunk.tenant_id)
            rows = await self._claim_rows(chunk, locked=True)
        summary = rows[0]
        if summary["suppressed_count"]:
            metrics.MESSAGES.labels(str(chunk.tenant_id), "suppressed").inc(summary["suppressed_count"])
        if summary["capped_count"]:
            metrics.MESSAGES.labels(str(chunk.tenant_id), "frequency_capped").inc(summary["capped_count"])
            log.info(
                "recipients skipped: frequency_capped",
                tenant_id=str(chunk.tenant_id),
                campaign_id=str(chunk.campaign_id),
                count=summary["capped_count"],
            )
        claimed = [
            Claimed(
                row["id"],
                row["claimed_at"],
                row["attempts"],
                row["deferrals"],
                row["phone_e164"],
                recipient_data(row),
            )
            for row in rows
            if row["id"] is not None
        ]
        hold = None
        if summary["hold_reason"] is not None:
            hold = Hold(summary["hold_reason"], summary["hold_until"])
        return Claim(claimed, short_of_credits=summary["short_of_credits"], hold=hold)

    async def _claim_rows(self, chunk: SendChunk, *, locked: bool) -> list[asyncpg.Record]:
        """The claim statement; ``locked``: in a transaction behind the tenant's messaging-limit
        lock, so that claims of a limited tenant take turns (see ``queries.CLAIM``)."""
        args = (
            chunk.tenant_id,
            chunk.campaign_id,
            chunk.recipient_ids,
            self._settings.lease_s,
            self._settings.credits_enabled,
            self._settings.messaging_window_s,
            locked,
        )
        if not locked:
            unlocked: list[asyncpg.Record] = await OneTenant(self._pool).fetch(
                chunk.tenant_id, queries.CLAIM, *args
            )
            return unlocked
        async with tenant_transaction(self._pool, chunk.tenant_id) as conn:
            await conn.execute(queries.LOCK_SEND_LIMIT, chunk.tenant_id)
            rows: list[asyncpg.Record] = await conn.fetch(queries.CLAIM, *args)
            return rows

    async def _roll_credit_period(self, tenant_id: UUID) -> None:
        """Expire last month's plan credits and grant this month's, once per tenant and month."""
        month = credits.period_start(date.today())
        if self._rolled.get(tenant_id) != month:
            await OneTenant(self._pool).execute(tenant_id, queries.ROLL_CREDIT_PERIOD, tenant_id, month)
            self._rolled[tenant_id] = month

    def _skip_reason(self, chunk: SendChunk, tenant: TenantInfo, claimed_mono: float) -> Skip | None:
        if self.stopping:
            return Skip.SHUTDOWN
        # The window closed after the claim: handed back like a pause, sent after it opens.
        if self._gate.blocked(chunk.campaign_id) or not self._window_open(tenant):
            return Skip.PAUSED
        # Never start a call that could outlive the lease: the row would be reconciled mid-call.
        if time.monotonic() > self._write_by(claimed_mono):
            return Skip.LATE
        return None

    def _window_open(self, tenant: TenantInfo) -> bool:
        return tenant.window.always_open or tenant.window.open_at(self._clock.now())

    async def _report_timing(self, chunk: SendChunk, timing: ChunkTiming, reply_to: str) -> None:
        """Tell the dispatcher that slotted the chunk when it ran late: it stretches its lead and
        tolerance to what this machine manages (shared/throttle.AdaptiveTiming). The tolerance
        asked for is that of this sender's recent paced wake-ups, this chunk's among them
        (``services.sender.wake_lateness``)."""
        for lateness in timing.woke_late:
            self._paced_lateness.add(lateness)
        woke_late = self._paced_lateness.tolerance_s()
        # Only what asks for more than the configured lead and tolerance: the dispatcher's
        # stretched values return to those by themselves.
        if timing.arrived_late_s > 0 or woke_late > self._settings.late_tolerance_s:
            await self._recorder.report_timing(
                chunk.tenant_id, reply_to, arrived_late_s=timing.arrived_late_s, woke_late_s=woke_late
            )

    async def _call_at_a_slot(
        self, tenant_id: UUID, book: SlotBook, slot_at: float, timing: ChunkTiming | None
    ) -> float | None:
        """Wait for a slot of the chunk and a call; the slot, or None when the chunk has none left."""
        wait = slot_at - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        while True:
            slot = book.take(time.time())
            if slot is None:
                return None
            wait = slot - time.time()
            while wait > 0:
                await asyncio.sleep(wait)
                wait = slot - time.time()
            await self._calls.acquire(tenant_id, timed=True)
            now = time.time()
            if timing is not None:
                # How late it woke and got a call for its slot: what the tolerance must absorb.
                timing.woke_late.append(now - slot)
            if book.usable(slot, now):
                return slot
            # The slot passed while waiting for a call: take the next one.
            self._calls.release(tenant_id)

    def _write_by(self, claimed_mono: float) -> float:
        return claimed_mono + self._settings.lease_s - self._settings.twilio_timeout_s - 1.0

    async def _send(
        self,
        tenant: TenantInfo,
        template: Template,
        chunk: SendChunk,
        row: Claimed,
        slot_at: float | None,
        book: SlotBook | None,
        claimed_mono: float,
        timing: ChunkTiming | None = None,
    ) -> Settlement:
        def settle(
            transition: Transition, sid: str | None = None, accepted_at: float | None = None
        ) -> Settlement:
            return Settlement(
                row.recipient_id,
                chunk.campaign_id,
                row.claimed_at,
                row.phone_e164,
                row.attempts,
                transition,
                sid,
                accepted_at,
            )

        if tenant.recipient_windows is not None:
            opens_at = tenant.recipient_windows.opens_at(row.phone_e164, self._clock.now())
            if opens_at is not None:
                return settle(outside_window(opens_at))
        if book is not None and slot_at is not None:
            metrics.THROTTLE_WAIT.labels(str(chunk.tenant_id)).observe(max(slot_at - time.time(), 0.0))
        while True:
            settlement = await self._send_once(
                tenant, template, chunk, row, slot_at, book, claimed_mono, timing, settle
            )
            if settlement is not None:
                return settlement
            # Its slot passed before the request could be written (nothing was sent): the next.
            slot_at = time.time()

    async def _send_once(
        self,
        tenant: TenantInfo,
        template: Template,
        chunk: SendChunk,
        row: Claimed,
        slot_at: float | None,
        book: SlotBook | None,
        claimed_mono: float,
        timing: ChunkTiming | None,
        settle: Callable[..., Settlement],
    ) -> Settlement | None:
        """One try at a slot (or at once, unpaced); None when the slot passed before the request
        was written, so that nothing was sent and the message may take the chunk's next slot."""
        slot: float | None = None
        if book is not None and slot_at is not None:
            slot = await self._call_at_a_slot(chunk.tenant_id, book, slot_at, timing)
            if slot is None:
                return settle(skipped(Skip.LATE))
        else:
            await self._calls.acquire(chunk.tenant_id, timed=False)
        try:
            reason = self._skip_reason(chunk, tenant, claimed_mono)
            if reason is not None:
                return settle(skipped(reason))
            message = render(template, row.data, tenant.style)
            refusal = refused_locally(message)
            if refusal is not None:
                return settle(refusal)
            # Checked again as the request is written: a sender frozen (SIGSTOP) between the
            # check above and the write must not send once its lease has run out and the row may
            # have been reconciled and sent by another sender; and a paced message must not be
            # written past its slot's tolerance, where it would crowd the next second's messages
            # at Twilio (a busy machine can starve the sender between its slot and the write).
            write_by = lease_write_by = self._write_by(claimed_mono)
            if slot is not None and book is not None:
                write_by = min(write_by, time.monotonic() + (slot + book.tolerance - time.time()))
            started = time.perf_counter()
            try:
                created = await self._client.create_message(
                    tenant.credentials,
                    to=f"whatsapp:{row.phone_e164}",
                    from_=tenant.from_address,
                    messaging_service_sid=tenant.messaging_service_sid,
                    body=message.body,
                    content_sid=message.content_sid,
                    content_variables=message.content_variables,
                    status_callback=status_callback_request_url(
                        self._settings.public_base_url, chunk.tenant_id
                    ),
                    validity_period=VALIDITY_PERIOD_S,
                    write_by=write_by,
                )
            except TwilioError as exc:
                if exc.missed_write_by and write_by < lease_write_by and not self.stopping:
                    if timing is not None and slot is not None:
                        timing.woke_late.append(time.time() - slot)
                    SLOTS_MISSED_AT_WRITE.labels(str(chunk.tenant_id)).inc()
                    return None
                outcome = classify(
                    http_status=exc.http_status,
                    code=exc.code,
                    message=exc.message,
                    reached=exc.reached,
                    retry_after_s=exc.retry_after_s,
                )
                sid = None
                accepted_at = None
            else:
                accepted_at = time.time()
                outcome = classify(http_status=201)
                sid = created.sid
            finally:
                CREATE_LATENCY.observe(time.perf_counter() - started)
        finally:
            self._calls.release(chunk.tenant_id)
        if outcome.code is not None:
            metrics.TWILIO_ERRORS.labels(str(outcome.code), SEND_STAGE).inc()
        transition = after_attempt(
            outcome,
            attempts=row.attempts,
            deferrals=row.deferrals,
            tiers=self._settings.retry_tiers_s,
            max_attempts=self._settings.max_attempts,
            paced=chunk.first_slot_at is not None,
            pair_retry_s=self._settings.pair_rate_retry_s,
        )
        return settle(transition, sid, accepted_at)
