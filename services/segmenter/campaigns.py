"""Campaign lifecycle: create, start, pause, resume, cancel, retry failed, complete.

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
from services.segmenter.schemas import CampaignCreate
from shared import topology
from shared.broker import Publisher
from shared.db import OneTenant, tenant_transaction
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
    message = CampaignLifecycle(
        event=event,
        tenant_id=row["tenant_id"],
        campaign_id=row["id"],
        state=row["state"],
        reason=row["pause_reason"],
        at=datetime.now(UTC),
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

    def __init__(self, pool: asyncpg.Pool, publisher: Publisher, runner: CampaignRunnerProtocol) -> None:
        self._pool = pool
        self._publisher = publisher
        self._runner = runner

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

    async def complete_if_done(self, tenant_id: UUID, campaign_id: UUID) -> bool:
        if await OneTenant(self._pool).fetchval(tenant_id, queries.HAS_UNSETTLED, campaign_id):
            return False
        row = await OneTenant(self._pool).fetchrow(tenant_id, queries.MARK_COMPLETED, tenant_id, campaign_id)
        if row is None:
            return False
        await publish_lifecycle(self._publisher, row, "completed")
        log.info("campaign completed", tenant_id=str(tenant_id), campaign_id=str(campaign_id))
        return True
