"""Campaign lifecycle: create, schedule, start, pause, resume, cancel, retry failed, complete; and
the holds of running campaigns (outside the sending window).

State changes are conditional UPDATEs (concurrent requests settle on one outcome) followed by a
lifecycle event on ``wce.events`` that dispatchers and senders gate on and anyone may follow.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from services.segmenter import queries
from services.segmenter.audience.query import validate_audience
from services.segmenter.scheduling import resolve_schedule
from services.segmenter.schemas import CampaignCreate
from shared import topology
from shared.broker import Publisher
from shared.clock import Clock
from shared.db import AllTenants, OneTenant, tenant_transaction
from shared.events import CampaignLifecycle, LifecycleName
from shared.http import InputError
from shared.logging import get_logger
from shared.templating import body_length_errors, validate_template

log = get_logger(__name__)

ContentCheck = Callable[[UUID, str], Awaitable[bool]]


class CampaignNotFound(LookupError):
    pass


class InvalidTransition(RuntimeError):
    def __init__(self, campaign_id: UUID, state: str, action: str) -> None:
        super().__init__(f"campaign {campaign_id} is {state}; cannot {action}")
        self.state = state


async def create_campaign(
    pool: asyncpg.Pool,
    *,
    tenant_id: UUID,
    data: CampaignCreate,
    content_is_approved: ContentCheck | None = None,
    kind: str = "campaign",
    idempotency_key: str | None = None,
    options: dict[str, Any] | None = None,
) -> asyncpg.Record:
    """Validate and store a draft campaign. Raises InputError naming each bad field."""
    template = data.template.model_dump()
    errors = validate_template(template, appointment_available=data.audience.provides_appointment)
    if not errors:
        errors = body_length_errors(template)
    if "content_sid" in template and content_is_approved is not None and not errors:
        if not await content_is_approved(tenant_id, template["content_sid"]):
            errors.append(
                {
                    "field": "template.content_sid",
                    "message": "not an approved WhatsApp template of this account",
                }
            )
    async with tenant_transaction(pool, tenant_id) as conn:
        try:
            await validate_audience(conn, tenant_id=tenant_id, audience=data.audience)
        except InputError as exc:
            errors.extend(exc.errors)
        if errors:
            raise InputError(errors)
        return await conn.fetchrow(
            queries.INSERT_CAMPAIGN,
            uuid.uuid4(),
            tenant_id,
            data.name,
            kind,
            data.audience.model_dump(mode="json"),
            template,
            options or {},
            idempotency_key,
        )


async def get_campaign(pool: asyncpg.Pool, tenant_id: UUID, campaign_id: UUID) -> asyncpg.Record:
    row = await OneTenant(pool).fetchrow(tenant_id, queries.SELECT_CAMPAIGN, tenant_id, campaign_id)
    if row is None:
        raise CampaignNotFound(campaign_id)
    return row


async def publish_lifecycle(publisher: Publisher, row: asyncpg.Record, event: LifecycleName) -> None:
    held = event == "held"
    message = CampaignLifecycle(
        event=event,
        tenant_id=row["tenant_id"],
        campaign_id=row["id"],
        state=row["state"],
        reason=row["hold_reason"] if held else row["pause_reason"],
        at=datetime.now(UTC),
        until=row["hold_until"] if held else None,
    )
    await publisher.publish(topology.EVENTS_EXCHANGE, message.routing_key(), message, mandatory=False)


async def _transition(
    pool: asyncpg.Pool, sql: str, tenant_id: UUID, campaign_id: UUID, action: str, *args: Any
) -> asyncpg.Record:
    row = await OneTenant(pool).fetchrow(tenant_id, sql, tenant_id, campaign_id, *args)
    if row is None:
        current = await get_campaign(pool, tenant_id, campaign_id)
        raise InvalidTransition(campaign_id, current["state"], action)
    return row


class CampaignRunnerProtocol(Protocol):
    def launch(self, tenant_id: UUID, campaign_id: UUID, *, republish: bool = False) -> None: ...


class Lifecycle:
    """The campaign operations, shared by the HTTP API and the broker command consumer."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: Publisher,
        runner: CampaignRunnerProtocol,
        clock: Clock | None = None,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._runner = runner
        self.clock = clock or Clock()

    async def schedule(
        self,
        tenant_id: UUID,
        campaign_id: UUID,
        *,
        at: datetime,
        timezone: str | None,
        field: str = "schedule",
    ) -> asyncpg.Record:
        """Schedule a draft, or move a campaign's time while it waits; InputError for a time in the
        past or an unknown zone (``field`` prefixes the names), InvalidTransition once it started."""
        current = await get_campaign(self._pool, tenant_id, campaign_id)
        if current["state"] not in ("draft", "scheduled"):
            raise InvalidTransition(campaign_id, current["state"], "schedule")
        tenant_timezone = await self._pool.fetchval("SELECT timezone FROM tenants WHERE id = $1", tenant_id)
        resolved = resolve_schedule(
            at=at, timezone=timezone, tenant_timezone=tenant_timezone, now=self.clock.now(), field=field
        )
        return await _transition(
            self._pool,
            queries.MARK_SCHEDULED,
            tenant_id,
            campaign_id,
            "schedule",
            resolved.at,
            resolved.timezone,
        )

    async def start_due(self, limit: int = 100) -> list[asyncpg.Record]:
        """Start the scheduled campaigns whose time has come (each exactly once, whichever
        segmenter gets it); the runner takes their audience now."""
        # Scheduled campaigns of every tenant: a cross-tenant pass.
        rows = await AllTenants(self._pool).fetch(queries.START_DUE, self.clock.now(), limit)
        for row in rows:
            log.info(
                "scheduled campaign started", tenant_id=str(row["tenant_id"]), campaign_id=str(row["id"])
            )
            await publish_lifecycle(self._publisher, row, "started")
            self._runner.launch(row["tenant_id"], row["id"])
        return rows

    async def hold(self, tenant_id: UUID, campaign_id: UUID, reason: str, until: datetime | None) -> bool:
        """Stop a running campaign from sending, keeping it running; False when it holds already."""
        row = await OneTenant(self._pool).fetchrow(
            tenant_id, queries.SET_HOLD, tenant_id, campaign_id, reason, until
        )
        if row is None:
            await OneTenant(self._pool).execute(
                tenant_id, queries.MOVE_HOLD, tenant_id, campaign_id, reason, until
            )
            return False
        log.info("campaign holds", campaign_id=str(campaign_id), reason=reason, until=str(until))
        await publish_lifecycle(self._publisher, row, "held")
        return True

    async def release(self, tenant_id: UUID, campaign_id: UUID, reason: str) -> bool:
        """End a hold of this reason; the recipients the broker no longer holds go out again."""
        row = await OneTenant(self._pool).fetchrow(
            tenant_id, queries.RELEASE_HOLD, tenant_id, campaign_id, reason
        )
        if row is None:
            return False
        log.info("campaign hold released", campaign_id=str(campaign_id), reason=reason)
        await publish_lifecycle(self._publisher, row, "released")
        self._runner.launch(tenant_id, campaign_id, republish=True)
        return True

    async def start(self, tenant_id: UUID, campaign_id: UUID) -> asyncpg.Record:
        row = await _transition(self._pool, queries.MARK_STARTED, tenant_id, campaign_id, "start")
        await publish_lifecycle(self._publisher, row, "started")
        self._runner.launch(tenant_id, campaign_id)
        return row

    async def pause(self, tenant_id: UUID, campaign_id: UUID, reason: str | None) -> asyncpg.Record:
        row = await _transition(
            self._pool, queries.MARK_PAUSED, tenant_id, campaign_id, "pause", reason or "paused"
        )
        await publish_lifecycle(self._publisher, row, "paused")
        return row

    async def resume(self, tenant_id: UUID, campaign_id: UUID) -> asyncpg.Record:
        row = await _transition(self._pool, queries.MARK_RESUMED, tenant_id, campaign_id, "resume")
        await publish_lifecycle(self._publisher, row, "resumed")
        self._runner.launch(tenant_id, campaign_id, republish=True)
        return row

    async def cancel(self, tenant_id: UUID, campaign_id: UUID) -> asyncpg.Record:
        row = await _transition(self._pool, queries.MARK_CANCELLED, tenant_id, campaign_id, "cancel")
        await OneTenant(self._pool).execute(tenant_id, queries.CANCEL_LEFT_RECIPIENTS, tenant_id, campaign_id)
        await publish_lifecycle(self._publisher, row, "cancelled")
        return row

    async def retry_failed(self, tenant_id: UUID, campaign_id: UUID) -> asyncpg.Record:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            row = await conn.fetchrow(queries.REOPEN_FOR_RETRY, tenant_id, campaign_id)
            if row is None:
                current = await get_campaign(self._pool, tenant_id, campaign_id)
                raise InvalidTransition(campaign_id, current["state"], "retry failed recipients of")
            await conn.execute(queries.REQUEUE_FAILED, tenant_id, campaign_id)
        await publish_lifecycle(self._publisher, row, "resumed")
        self._runner.launch(tenant_id, campaign_id, republish=True)
        return row

    async def reopen_if_refused(self, tenant_id: UUID, campaign_id: UUID) -> bool:
        """Run a completed campaign again when a status callback reported a refusal (131048,
        131056) after it completed: the refused recipients were sent back to wait for another
        send, which a completed campaign would never make. It completes again once they settle."""
        row = await OneTenant(self._pool).fetchrow(
            tenant_id, queries.REOPEN_FOR_REFUSED, tenant_id, campaign_id
        )
        if row is None:
            return False
        await publish_lifecycle(self._publisher, row, "resumed")
        if row["hold_reason"] is not None:
            await publish_lifecycle(self._publisher, row, "held")
        log.info(
            "campaign running again: recipients refused after it completed wait to be sent",
            tenant_id=str(tenant_id),
            campaign_id=str(campaign_id),
        )
        return True

    async def complete_if_done(self, tenant_id: UUID, campaign_id: UUID) -> bool:
        if await OneTenant(self._pool).fetchval(tenant_id, queries.HAS_UNSETTLED, campaign_id):
            return False
        row = await OneTenant(self._pool).fetchrow(tenant_id, queries.MARK_COMPLETED, tenant_id, campaign_id)
        if row is None:
            return False
        await publish_lifecycle(self._publisher, row, "completed")
        log.info("campaign completed", tenant_id=str(tenant_id), campaign_id=str(campaign_id))
        return True
