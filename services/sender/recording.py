"""Writing outcomes: recipient states, events, credits and suppressions in one transaction per
chunk, then the broker follow-ups (retry tiers, back to the dispatcher).

The database is written first: a row in ``retry_wait`` whose retry message is lost is found by
the sweeper, whereas a retry message for a row the database still calls ``sending`` could not
be claimed. A write that keeps failing is given up after a few seconds; the rows then stay
``sending``, their lease runs out, and the reconciler settles them from Twilio's records.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID

import asyncpg

from services.sender import queries
from services.sender.metrics import CREDITS_DEBITED
from services.sender.outcomes import Transition
from shared import metrics, topology
from shared.broker import BrokerUnavailable, Publisher
from shared.clock import Clock
from shared.db import OneTenant
from shared.events import ChunkDone, RecipientBatch
from shared.logging import get_logger

log = get_logger(__name__)

# A terminated backend can also surface as an InternalClientError from the connection it broke.
DB_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)
WRITE_ATTEMPTS = 6
T = TypeVar("T")


@dataclass(frozen=True)
class Settlement:
    recipient_id: int
    campaign_id: UUID
    claimed_at: datetime
    phone_e164: str
    attempts: int
    transition: Transition
    sid: str | None = None
    # When Twilio's answer accepting the message arrived (epoch seconds): the row's ``sent_at``.
    accepted_at: float | None = None


@dataclass
class Settled:
    applied: list[Settlement] = field(default_factory=list)
    debited: int = 0


async def with_db_retry(
    label: str, operation: Callable[[], Awaitable[T]], attempts: int = WRITE_ATTEMPTS
) -> T:
    """Run ``operation()`` again after a database hiccup (a restart, a terminated backend)."""
    delay = 0.1
    for attempt in range(1, attempts + 1):
        try:
            return await operation()
        except DB_ERRORS as exc:
            if attempt == attempts:
                raise
            log.warning("database write failed, retrying", what=label, attempt=attempt, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _as_recorded(settlement: Settlement, state: str) -> Settlement:
    """The settlement with the state the database recorded (cancelled when its campaign was)."""
    if state == settlement.transition.to_state:
        return settlement
    return replace(settlement, transition=Transition(state, error_message="campaign cancelled"))


def _log_retries(tenant_id: UUID, applied: list[Settlement], source: str) -> None:
    """One INFO line per campaign, Twilio code and tier among the retries scheduled (or the
    messages sent back for a new slot): operators see a storm as it happens, never a number."""
    retries = Counter(
        (item.campaign_id, item.transition.error_code, item.transition.tier_s)
        for item in applied
        if item.transition.to_state == "retry_wait"
        or (item.transition.redispatch and item.transition.error_code is not None)
    )
    for (campaign_id, code, tier), count in retries.items():
        log.info(
            "retry scheduled",
            tenant_id=str(tenant_id),
            campaign_id=str(campaign_id),
            code=code,
            # Refused for rate with a paced tenant: back to the dispatcher for a new slot.
            tier=f"{tier}s" if tier else "new slot",
            recipients=count,
            source=source,
        )


def _next_attempt_at(transition: Transition, now: datetime) -> datetime | None:
    if transition.wait_until is not None:
        return transition.wait_until
    return now + timedelta(seconds=transition.tier_s) if transition.tier_s else None


class Recorder:
    def __init__(self, pool: asyncpg.Pool, publisher: Publisher, clock: Clock | None = None) -> None:
        self._pool = pool
        self._publisher = publisher
        # Retry times are written on the clock the sweeper reads them with.
        self._clock = clock or Clock()

    async def settle(
        self, tenant_id: UUID, settlements: list[Settlement], *, source: str, reply_to: str | None = None
    ) -> Settled:
        """Persist the transitions (those whose claim is still current), then publish follow-ups.
        Messages handed back as late go to ``reply_to`` (the queue of the dispatcher that gave
        them their slots) when there is one, else back into the tenant's dispatch queue."""
        if not settlements:
            return Settled()

        async def write() -> Settled:
            return await self._write(tenant_id, settlements, source)

        try:
            settled = await with_db_retry("outcomes", write)
        except DB_ERRORS as exc:
            log.error("outcomes not recorded; leases will expire and be reconciled", error=repr(exc))
            return Settled()
        await self._follow_up(tenant_id, settled.applied, reply_to)
        _log_retries(tenant_id, settled.applied, source)
        tenant = str(tenant_id)
        for state, count in Counter(item.transition.to_state for item in settled.applied).items():
            metrics.MESSAGES.labels(tenant, state).inc(count)
        if settled.debited:
            CREDITS_DEBITED.labels(tenant).inc(settled.debited)
        return settled

    async def _hand_back(self, tenant_id: UUID, campaign_id: UUID, ids: list[int], reply_to: str) -> bool:
        """Late recipients to the dispatcher that slotted them; False when it has gone away."""
        done = ChunkDone(tenant_id=tenant_id, chunk_id="late", campaign_id=campaign_id, late_ids=ids)
        try:
            await self._publisher.publish("", reply_to, done)
        except BrokerUnavailable:
            return False
        return True

    async def report_timing(
        self, tenant_id: UUID, reply_to: str, *, arrived_late_s: float, woke_late_s: float
    ) -> None:
        """A rate-limited chunk ran late: tell the dispatcher that slotted it (best effort; the
        next late chunk tells it again)."""
        done = ChunkDone(
            tenant_id=tenant_id,
            chunk_id="timing",
            arrived_late_s=min(arrived_late_s, 3600.0),
            woke_late_s=min(woke_late_s, 3600.0),
        )
        try:
            await self._publisher.publish("", reply_to, done, mandatory=False)
        except BrokerUnavailable:
            pass

    async def _write(self, tenant_id: UUID, settlements: list[Settlement], source: str) -> Settled:
        now = self._clock.now()
        ordered = sorted(settlements, key=lambda s: s.recipient_id)
        by_id = {s.recipient_id: s for s in ordered}
        rows = await OneTenant(self._pool).fetch(
            tenant_id,
            queries.SETTLE,
            tenant_id,
            [s.recipient_id for s in ordered],
            [s.claimed_at for s in ordered],
            [s.transition.to_state for s in ordered],
            [s.sid for s in ordered],
            [s.transition.error_code for s in ordered],
            [s.transition.error_message for s in ordered],
            [s.transition.uncount for s in ordered],
            [_next_attempt_at(s.transition, now) for s in ordered],
            source,
            [s.transition.suppress for s in ordered],
            [s.accepted_at for s in ordered],
        )
        applied = [_as_recorded(by_id[row["id"]], row["to_state"]) for row in rows]
        return Settled(applied=applied, debited=rows[0]["debited"] if rows else 0)

    async def _follow_up(
        self, tenant_id: UUID, applied: list[Settlement], reply_to: str | None = None
    ) -> None:
        retries: dict[tuple[UUID, int, int], list[int]] = defaultdict(list)
        redispatch: dict[UUID, list[int]] = defaultdict(list)
        for item in applied:
            if item.transition.to_state == "retry_wait" and item.transition.tier_s:
                retries[(item.campaign_id, item.transition.tier_s, item.attempts)].append(item.recipient_id)
            elif item.transition.redispatch:
                redispatch[item.campaign_id].append(item.recipient_id)
        key = str(tenant_id)
        try:
            for (campaign_id, tier, attempts), ids in retries.items():
                batch = RecipientBatch(tenant_id=tenant_id, campaign_id=campaign_id, recipient_ids=ids)
                await self._publisher.publish(
                    topology.retry_exchange_name(tier),
                    key,
                    batch,
                    headers={topology.ATTEMPT_HEADER: attempts},
                )
                metrics.RETRIES.labels(key, f"{tier}s").inc(len(ids))
            for campaign_id, ids in redispatch.items():
                if reply_to is not None and await self._hand_back(tenant_id, campaign_id, ids, reply_to):
                    continue
                batch = RecipientBatch(tenant_id=tenant_id, campaign_id=campaign_id, recipient_ids=ids)
                await self._publisher.publish(topology.RECIPIENTS_EXCHANGE, key, batch)
        except BrokerUnavailable as exc:
            # The rows are recorded as waiting; the sweeper re-publishes what the broker never took.
            log.warning("follow-up publish failed; left to the sweeper", error=str(exc))
