"""``campaign.requested``: other systems create and start a campaign over the broker.

A request creates and starts (version 2: or schedules) one campaign per (tenant, idempotency
key): a repeated key — a redelivery, or the requester retrying — answers ``campaign.accepted``
with the campaign the key already made. A request that cannot be accepted answers
``campaign.rejected`` with the field-level reasons the HTTP API gives for the same body. Only a
body without a usable tenant id and key is parked, since no one could be told about it.
"""

from __future__ import annotations

import asyncpg
from pydantic import ValidationError

from services.segmenter import campaigns, queries
from services.segmenter.campaigns import ContentCheck, Lifecycle
from services.segmenter.commands import CommandHandler
from services.segmenter.scheduling import resolve_schedule
from services.segmenter.schemas import CampaignCreate
from shared import topology
from shared.broker import PoisonMessage, Publisher
from shared.db import OneTenant
from shared.events import (
    CampaignAccepted,
    CampaignRejected,
    CampaignRequested,
    CampaignRequestedV2,
    CampaignRequestKey,
    CampaignSchedule,
    RejectionReason,
)
from shared.http import InputError
from shared.logging import get_logger

log = get_logger(__name__)

Outcome = CampaignAccepted | CampaignRejected


def _reasons(exc: ValidationError) -> list[RejectionReason]:
    return [
        RejectionReason(field=".".join(str(part) for part in error["loc"]) or "body", message=error["msg"])
        for error in exc.errors()
    ]


async def _accepted(
    lifecycle: Lifecycle, key: CampaignRequestKey, row: asyncpg.Record, schedule: CampaignSchedule | None
) -> CampaignAccepted:
    # A campaign left in draft (the process stopped between creating and starting or scheduling
    # it) is started or scheduled now.
    if row["state"] == "draft" and schedule is not None:
        row = await lifecycle.schedule(key.tenant_id, row["id"], at=schedule.at, timezone=schedule.timezone)
    elif row["state"] == "draft":
        row = await lifecycle.start(key.tenant_id, row["id"])
    return CampaignAccepted(
        tenant_id=key.tenant_id,
        idempotency_key=key.idempotency_key,
        campaign_id=row["id"],
        state=row["state"],
    )


async def handle_request(
    pool: asyncpg.Pool,
    lifecycle: Lifecycle,
    body: bytes,
    *,
    content_is_approved: ContentCheck | None = None,
) -> Outcome:
    try:
        key = CampaignRequestKey.model_validate_json(body)
    except ValidationError as exc:
        raise PoisonMessage(f"campaign.requested without a tenant id and idempotency key: {exc}") from exc

    def rejected(reasons: list[RejectionReason]) -> CampaignRejected:
        return CampaignRejected(tenant_id=key.tenant_id, idempotency_key=key.idempotency_key, reasons=reasons)

    model = CampaignRequestedV2 if key.v == CampaignRequestedV2.VERSION else CampaignRequested
    try:
        request = model.model_validate_json(body)
    except ValidationError as exc:
        request = None
        invalid = exc
    schedule = request.schedule if isinstance(request, CampaignRequestedV2) else None
    existing = await OneTenant(pool).fetchrow(
        key.tenant_id, queries.SELECT_CAMPAIGN_BY_KEY, key.tenant_id, key.idempotency_key
    )
    if existing is not None:
        return await _accepted(lifecycle, key, existing, schedule)
    timezone = await pool.fetchval("SELECT timezone FROM tenants WHERE id = $1 AND active", key.tenant_id)
    if timezone is None:
        return rejected([RejectionReason(field="tenant_id", message="unknown or inactive tenant")])
    if request is None:
        return rejected(_reasons(invalid))
    try:
        data = CampaignCreate.model_validate(
            {"name": request.name, "audience": request.audience, "template": request.template}
        )
    except ValidationError as exc:
        return rejected(_reasons(exc))
    try:
        if schedule is not None:
            resolve_schedule(
                at=schedule.at,
                timezone=schedule.timezone,
                tenant_timezone=timezone,
                now=lifecycle.clock.now(),
            )
        row = await campaigns.create_campaign(
            pool,
            tenant_id=key.tenant_id,
            data=data,
            content_is_approved=content_is_approved,
            idempotency_key=key.idempotency_key,
            options=request.options,
        )
    except InputError as exc:
        return rejected([RejectionReason(field=e["field"], message=e["message"]) for e in exc.errors])
    except asyncpg.UniqueViolationError:
        # The same key is being handled concurrently (a redelivery): the other one created it.
        row = await OneTenant(pool).fetchrow(
            key.tenant_id, queries.SELECT_CAMPAIGN_BY_KEY, key.tenant_id, key.idempotency_key
        )
    return await _accepted(lifecycle, key, row, schedule)


def requested_handler(
    pool: asyncpg.Pool,
    publisher: Publisher,
    lifecycle: Lifecycle,
    content_is_approved: ContentCheck | None = None,
) -> CommandHandler:
    """The command handler for ``campaign.requested``: handle, then publish the outcome."""

    async def handle(body: bytes) -> None:
        outcome = await handle_request(pool, lifecycle, body, content_is_approved=content_is_approved)
        log.info(
            "campaign request handled",
            tenant_id=str(outcome.tenant_id),
            outcome=outcome.ROUTING_KEY,
            idempotency_key=outcome.idempotency_key,
        )
        # Outcomes are notifications: a requester that does not listen must not make them fail.
        await publisher.publish(topology.EVENTS_EXCHANGE, outcome.ROUTING_KEY, outcome, mandatory=False)

    return handle
