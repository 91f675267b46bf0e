"""Lease expiry, reconciliation of unknown sends, and the sweep of rows the broker lost.

One sender at a time does this: the holder of a lease in the database (``leadership.Lease``),
renewed by a heartbeat; when its holder dies or freezes, another sender takes over within
``maintenance_lease_s``.

- A row ``sending`` past its lease lost its sender mid-call: it becomes ``unknown``.
- An ``unknown`` row older than ``reconcile_after_s`` is looked up: first among the status
  callbacks the tracker could not match (by the recipient's number, since the sender never learnt
  the sid), then in Twilio's message list (To, From, sent on or after the claim). Found: ``sent``
  with that sid. Not found: believed (``outcomes.not_found_believed``) only on a second look that
  began once the create's latest possible write (``recipients.latest_write_at``: when the
  ambiguous answer was recorded, or the end of the lease of a sender that died) was older than
  the late-create bound, the Twilio timeout plus ``WCE_RECONCILE_MARGIN_S`` — not after some
  number of lookups: a starved server answers lookups on one connection before it reads a create
  written long before on another. Until then the row is not looked up again. Believed: Twilio
  never took the create, so the row goes through the retry tiers without counting an attempt,
  keeping the last Twilio error. Nothing is re-sent without looking first. The reasoning, what
  it assumes of Twilio and what the simulator does to match: ``docs/duplicates.md``.
- A row left at ``sent`` or ``delivered`` for ``status_recheck_after_s`` (its status callbacks
  may have been lost: tracker down, Twilio gave up) is fetched from Twilio, at most
  ``status_recheck_per_tenant`` per tenant and ``STATUS_RECHECK_BATCH`` in all per pass, taken
  in turns across tenants (every due tenant's oldest row, then every one's second oldest, ...),
  so tenants whose re-checks keep failing cannot fill the passes; a newer status is published
  to the tracker as a status callback, so it goes through exactly the rules every callback goes
  through (monotonic, replays ignored). A row is re-checked at most ``status_recheck_max``
  times, the interval doubling each time.
- A running campaign whose waiting rows have not moved for ``sweep_idle_s`` while its tenant's
  dispatch queue is empty lost their broker messages: they are published again (a duplicate only
  loses the claim race). A held campaign is left alone until its hold ends.
- A tenant whose recipients were sent back to wait by Meta's spam refusal (131048) reported in
  a status callback, after Twilio accepted the create (the tracker records them), has its sending
  held for ``spam_hold_s`` after the latest such refusal, as a refusal of the create holds it.
- A campaign whose hold has ended (its tenant's messaging window has room again, a spam hold ran
  out) is no longer held, and its waiting rows are published again at once; a claim that still
  finds no room holds it anew. Contacts that left their tenant's messaging window are forgotten.
- Frequency-cap entries no tenant's window can count any more are deleted, a slice at a time
  (``frequency_retention``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from aio_pika.abc import AbstractRobustConnection

from services.sender import queries
from services.sender.directory import Directory, TenantNotFound
from services.sender.engine import SPAM_HOLD_REASON
from services.sender.frequency_retention import FrequencyRetention
from services.sender.leadership import LeadershipLost, Lease
from services.sender.metrics import HOLDS, RECONCILED, STATUS_RECHECKS
from services.sender.outcomes import after_lookup, not_found_believed
from services.sender.recording import DB_ERRORS, Recorder, Settlement
from shared import topology
from shared.broker import BrokerUnavailable, Publisher, queue_depth
from shared.clock import Clock
from shared.db import AllTenants
from shared.events import CampaignLifecycle, RecipientBatch, StatusCallback, StatusCallbackBatch
from shared.logging import get_logger
from shared.twilio_client import FetchedMessage, ListedMessage, TwilioClient, TwilioError

log = get_logger(__name__)

MAINTENANCE_LEASE = "sender.maintenance"
EXPIRE_BATCH = 1000
HOLDS_BATCH = 100
FORGET_CONTACTS_BATCH = 5000
RECONCILE_BATCH = 500
# Status re-checks per pass, all tenants together: a pass (and the lease expiry and reconciling
# of the next) waits for its fetches, so their number must not grow with the tenants.
STATUS_RECHECK_BATCH = 500
LOOKUP_CONCURRENCY = 16
# What the reconciler's lookup of one row says when Twilio has no message for it yet.
LOOK_AGAIN = object()
# Twilio's clock and ours may differ; a message created this long before the claim still counts.
CLOCK_SKEW = timedelta(seconds=30)
# The Twilio statuses that move a row on from its state (the tracker decides whether they do).
NEWER_STATUSES = {
    "sent": frozenset({"delivered", "read", "undelivered", "failed"}),
    "delivered": frozenset({"read"}),
}


@dataclass(frozen=True)
class MaintenanceSettings:
    interval_s: float
    reconcile_after_s: float
    sweep_idle_s: float
    retry_tiers_s: list[int]
    publish_batch_size: int
    # How old a create's write must be before "not found" is believed (outcomes.late_create_bound_s).
    late_create_bound_s: float
    lease_s: float = 5.0
    status_recheck_after_s: float = 900.0
    status_recheck_per_tenant: int = 50
    status_recheck_max: int = 4
    messaging_window_s: float = 86_400.0
    spam_hold_s: float = 900.0
    frequency_retention_interval_s: float = 3600.0


def pick_message(
    messages: list[ListedMessage], not_before: datetime, taken: set[str]
) -> ListedMessage | None:
    """The earliest message created on or after ``not_before`` whose sid no recipient holds yet."""
    candidates = [
        (when, message)
        for message in messages
        if (when := message.date_created or message.date_sent) is not None
        and when >= not_before
        and message.sid not in taken
    ]
    return min(candidates, key=lambda candidate: candidate[0])[1] if candidates else None


@dataclass
class Waiting:
    count: int
    since: float


class Maintenance:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        connection: AbstractRobustConnection,
        publisher: Publisher,
        client: TwilioClient,
        directory: Directory,
        recorder: Recorder,
        settings: MaintenanceSettings,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or Clock()
        # Every statement of a pass spans tenants (the leader works for all of them); settling
        # goes through the recorder, one tenant at a time.
        self._all = AllTenants(pool)
        self._connection = connection
        self._publisher = publisher
        self._client = client
        self._directory = directory
        self._recorder = recorder
        self._settings = settings
        self._waiting: dict[UUID, Waiting] = {}
        self._last_sweep = 0.0
        self.lease = Lease(pool, MAINTENANCE_LEASE, duration_s=settings.lease_s)
        self.frequency_retention = FrequencyRetention(
            pool, interval_s=settings.frequency_retention_interval_s
        )

    async def run(self) -> None:
        """Forever: take the lease when no other sender holds it, then do a pass every interval
        while a heartbeat keeps the lease."""
        while True:
            try:
                if await self.lease.acquire():
                    log.info("maintenance leadership taken", holder=self.lease.holder)
                    await self._lead()
            except asyncio.CancelledError:
                raise
            except LeadershipLost:
                log.warning("maintenance leadership lost to another sender", holder=self.lease.holder)
            except (*DB_ERRORS, BrokerUnavailable) as exc:
                log.warning("maintenance pass failed", error=repr(exc))
            await asyncio.sleep(self._settings.interval_s)

    async def _lead(self) -> None:
        passes = asyncio.create_task(self._passes(), name="maintenance-passes")
        try:
            while True:
                # The heartbeat runs beside the passes, so a long pass never lets the lease lapse.
                done, _ = await asyncio.wait({passes}, timeout=self.lease.heartbeat_s)
                if done:
                    passes.result()
                    return
                if not await self.lease.acquire():
                    raise LeadershipLost(self.lease.holder)
        finally:
            passes.cancel()
            await asyncio.gather(passes, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.shield(self.lease.release())

    async def _passes(self) -> None:
        while True:
            await self.pass_once()
            await asyncio.sleep(self._settings.interval_s)

    async def pass_once(self) -> None:
        self.lease.ensure_held()
        await self.expire_leases()
        await self.reconcile()
        await self.recheck_statuses()
        await self.hold_tenants_refused_in_callbacks()
        await self.end_holds()
        now = time.monotonic()
        if now - self._last_sweep >= min(self._settings.sweep_idle_s / 4, 5.0):
            self._last_sweep = now
            await self.sweep()
            await self.forget_contacts()
        await self.frequency_retention.run_if_due()

    async def hold_tenants_refused_in_callbacks(self) -> int:
        """Hold the sending of tenants whose status callbacks reported a spam refusal; announce
        each campaign held (or held longer); how many were."""
        held = await self._all.fetch(
            queries.HOLD_TENANTS_REFUSED_IN_CALLBACKS, self._settings.spam_hold_s, SPAM_HOLD_REASON
        )
        for row in held:
            self.lease.ensure_held()
            HOLDS.labels(str(row["tenant_id"]), SPAM_HOLD_REASON).inc()
            log.warning(
                "tenant's sending held: spam refusal in a status callback",
                tenant_id=str(row["tenant_id"]),
                campaign_id=str(row["id"]),
                until=row["hold_until"].isoformat(),
            )
            event = CampaignLifecycle(
                event="held",
                tenant_id=row["tenant_id"],
                campaign_id=row["id"],
                state="running",
                reason=SPAM_HOLD_REASON,
                at=self._clock.now(),
                until=row["hold_until"],
            )
            try:
                await self._publisher.publish(
                    topology.EVENTS_EXCHANGE, event.routing_key(), event, mandatory=False
                )
            except BrokerUnavailable as exc:
                # The hold is in the database: gates see it at their next poll.
                log.warning("hold event not published", campaign_id=str(row["id"]), error=str(exc))
        return len(held)

    async def end_holds(self) -> int:
        """Clear the holds whose time has come and publish those campaigns' waiting rows again;
        how many rows were published."""
        published = 0
        for row in await self._all.fetch(queries.HOLDS_ENDED, HOLDS_BATCH):
            if row["state"] != "running":
                continue
            self.lease.ensure_held()
            released = CampaignLifecycle(
                event="released",
                tenant_id=row["tenant_id"],
                campaign_id=row["id"],
                state="running",
                reason=row["hold_reason"],
                at=self._clock.now(),
            )
            await self._publisher.publish(
                topology.EVENTS_EXCHANGE, released.routing_key(), released, mandatory=False
            )
            count = await self._republish(row["tenant_id"], row["id"], row["published_upto"], 0.0)
            log.info(
                "campaign hold ended",
                tenant_id=str(row["tenant_id"]),
                campaign_id=str(row["id"]),
                reason=row["hold_reason"],
                republished=count,
            )
            published += count
        return published

    async def forget_contacts(self) -> None:
        await self._all.execute(
            queries.FORGET_CONTACTS, self._settings.messaging_window_s, FORGET_CONTACTS_BATCH
        )

    async def expire_leases(self) -> None:
        while True:
            status = await self._all.execute(queries.EXPIRE_LEASES, EXPIRE_BATCH)
            if int(status.split()[-1]) < EXPIRE_BATCH:
                return

    async def reconcile(self) -> None:
        rows = await self._all.fetch(
            queries.UNKNOWN_DUE,
            self._settings.reconcile_after_s,
            RECONCILE_BATCH,
            self._settings.late_create_bound_s,
        )
        if not rows:
            return
        limit = asyncio.Semaphore(LOOKUP_CONCURRENCY)

        async def resolve(row: asyncpg.Record) -> Settlement | object | None:
            async with limit:
                return await self._resolve(row)

        resolved = await asyncio.gather(*(resolve(row) for row in rows))
        # Lookups take time: act on them only while still the leader.
        self.lease.ensure_held()
        by_tenant: dict[UUID, list[Settlement]] = defaultdict(list)
        look_again: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
        for row, outcome in zip(rows, resolved, strict=True):
            if isinstance(outcome, Settlement):
                by_tenant[row["tenant_id"]].append(outcome)
            elif outcome is LOOK_AGAIN:
                look_again[row["tenant_id"]].append(row)
        for tenant_id, waiting in look_again.items():
            await self._all.execute(
                queries.LOOK_AGAIN,
                tenant_id,
                [r["id"] for r in waiting],
                [r["claimed_at"] for r in waiting],
                [r["lookups"] for r in waiting],
            )
            RECONCILED.labels(str(tenant_id), "not_found_yet").inc(len(waiting))
        for tenant_id, settlements in by_tenant.items():
            settled = await self._recorder.settle(tenant_id, settlements, source="reconciler")
            for item in settled.applied:
                result = "found" if item.transition.to_state == "sent" else "not_found"
                RECONCILED.labels(str(tenant_id), result).inc()

    async def _resolve(self, row: asyncpg.Record) -> Settlement | object | None:
        """The row's settlement, ``LOOK_AGAIN`` (not found yet), or None (the lookup failed)."""
        tenant_id: UUID = row["tenant_id"]
        to = f"whatsapp:{row['phone_e164']}"
        not_before = row["claimed_at"] - CLOCK_SKEW
        sid: str | None = await self._all.fetchval(queries.ORPHAN_FOR_PHONE, tenant_id, to, not_before)
        if sid is None:
            try:
                tenant = await self._directory.tenant(tenant_id)
                messages = await self._client.list_messages(
                    tenant.credentials, to=to, from_=tenant.from_address, sent_after=not_before
                )
            except (TwilioError, TenantNotFound, ValueError) as exc:
                # ValueError: the tenant's Twilio secret cannot be decrypted (a key was rotated
                # away); the row waits, and other tenants' rows are still reconciled.
                log.warning("lookup failed; the row stays unknown", recipient_id=row["id"], error=str(exc))
                return None
            taken = {
                r["twilio_sid"] for r in await self._all.fetch(queries.TAKEN_SIDS, [m.sid for m in messages])
            }
            found = pick_message(messages, not_before, taken)
            sid = found.sid if found else None
        transition = after_lookup(
            sid is not None,
            believed=not_found_believed(
                lookups=row["lookups"],
                looked_at=row["looked_at"],
                latest_write_at=row["latest_write_at"],
                bound_s=self._settings.late_create_bound_s,
            ),
            attempts=row["attempts"],
            deferrals=row["deferrals"],
            tiers=self._settings.retry_tiers_s,
            last_code=row["error_code"],
            last_message=row["error_message"],
        )
        if transition is None:
            return LOOK_AGAIN
        return Settlement(
            row["id"],
            row["campaign_id"],
            row["claimed_at"],
            row["phone_e164"],
            row["attempts"],
            transition,
            sid,
        )

    async def recheck_statuses(self) -> int:
        """Fetch rows left at sent/delivered from Twilio and publish the newer statuses found as
        status callbacks; how many were published."""
        if self._settings.status_recheck_max <= 0:
            return 0
        rows = await self._all.fetch(
            queries.STATUS_RECHECK_DUE,
            self._settings.status_recheck_after_s,
            self._settings.status_recheck_per_tenant,
            self._settings.status_recheck_max,
            STATUS_RECHECK_BATCH,
        )
        if not rows:
            return 0
        limit = asyncio.Semaphore(LOOKUP_CONCURRENCY)

        async def fetch(row: asyncpg.Record) -> FetchedMessage | str:
            async with limit:
                return await self._fetch(row)

        fetched = await asyncio.gather(*(fetch(row) for row in rows))
        self.lease.ensure_held()
        callbacks: list[StatusCallback] = []
        checked: list[int] = []
        postponed: list[int] = []
        for row, found in zip(rows, fetched, strict=True):
            if isinstance(found, str):
                (postponed if found == "error" else checked).append(row["id"])
                STATUS_RECHECKS.labels(found).inc()
                continue
            checked.append(row["id"])
            status = (found.status or "").lower()
            if status not in NEWER_STATUSES.get(row["state"], frozenset()):
                STATUS_RECHECKS.labels("unchanged").inc()
                continue
            callbacks.append(self._callback(row, found, status))
        # Published before the rows are marked: a publish that fails leaves them due.
        for start in range(0, len(callbacks), 1000):
            await self._publisher.publish(
                topology.STATUS_EXCHANGE,
                topology.STATUS_ROUTING_KEY,
                StatusCallbackBatch(callbacks=callbacks[start : start + 1000]),
            )
        STATUS_RECHECKS.labels("changed").inc(len(callbacks))
        if checked:
            await self._all.execute(queries.STATUS_RECHECKED, checked, 1)
        if postponed:
            await self._all.execute(queries.STATUS_RECHECKED, postponed, 0)
        if callbacks:
            log.info("statuses repaired from Twilio", count=len(callbacks))
        return len(callbacks)

    async def _fetch(self, row: asyncpg.Record) -> FetchedMessage | str:
        """The message as Twilio has it, or the outcome ``not_found`` or ``error``."""
        try:
            tenant = await self._directory.tenant(row["tenant_id"])
            return await self._client.fetch_message(tenant.credentials, row["twilio_sid"])
        except TwilioError as exc:
            if exc.http_status == 404:
                return "not_found"
            log.warning("status re-check failed", recipient_id=row["id"], error=str(exc))
            return "error"
        except (TenantNotFound, ValueError) as exc:
            log.warning("status re-check failed", recipient_id=row["id"], error=repr(exc))
            return "error"

    @staticmethod
    def _callback(row: asyncpg.Record, found: FetchedMessage, status: str) -> StatusCallback:
        params = {"MessageSid": found.sid, "MessageStatus": status}
        if found.error_code is not None:
            params["ErrorCode"] = str(found.error_code)
        if found.error_message:
            params["ErrorMessage"] = found.error_message
        # No idempotency token: the callback is known by SID and status, so fetching the same
        # status again (the tracker has not applied it yet) is a replay.
        return StatusCallback(tenant_id=row["tenant_id"], params=params)

    async def sweep(self) -> None:
        grace = self._settings.sweep_idle_s
        running = await self._all.fetch(queries.RUNNING_CAMPAIGNS)
        seen: set[UUID] = set()
        now = time.monotonic()
        for campaign in running:
            campaign_id: UUID = campaign["id"]
            seen.add(campaign_id)
            count = await self._all.fetchval(
                queries.COUNT_WAITING, campaign_id, campaign["published_upto"], grace, self._clock.now()
            )
            previous = self._waiting.get(campaign_id)
            if not count:
                self._waiting.pop(campaign_id, None)
                continue
            if previous is None or previous.count != count:
                self._waiting[campaign_id] = Waiting(count, now)
                continue
            if now - previous.since < grace:
                continue
            if await self._dispatch_backlog(campaign["tenant_id"]):
                continue
            self.lease.ensure_held()
            published = await self._republish(
                campaign["tenant_id"], campaign_id, campaign["published_upto"], grace
            )
            log.warning("stuck recipients re-published", campaign_id=str(campaign_id), count=published)
            self._waiting[campaign_id] = Waiting(count, now)
        for campaign_id in set(self._waiting) - seen:
            del self._waiting[campaign_id]

    async def _dispatch_backlog(self, tenant_id: UUID) -> int:
        async with self._connection.channel() as channel:
            return await queue_depth(channel, topology.dispatch_queue_name(str(tenant_id)))

    async def _republish(self, tenant_id: UUID, campaign_id: UUID, published_upto: int, grace: float) -> int:
        size = self._settings.publish_batch_size
        cursor, total = 0, 0
        while True:
            ids = [
                r["id"]
                for r in await self._all.fetch(
                    queries.WAITING_IDS, campaign_id, published_upto, grace, cursor, size, self._clock.now()
                )
            ]
            if not ids:
                return total
            batch = RecipientBatch(tenant_id=tenant_id, campaign_id=campaign_id, recipient_ids=ids)
            await self._publisher.publish(topology.RECIPIENTS_EXCHANGE, str(tenant_id), batch)
            cursor = ids[-1]
            total += len(ids)
