"""Campaigns: create, list, show, schedule, start, pause, resume, cancel, retry failed recipients."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated
from uuid import UUID

import asyncpg
from fastapi import APIRouter, HTTPException, Query, Request, status

from services.segmenter import campaigns, queries
from services.segmenter.deps import LifecycleDep
from services.segmenter.scheduling import resolve_schedule
from services.segmenter.schemas import (
    CampaignAction,
    CampaignCreate,
    CampaignKind,
    CampaignOut,
    CampaignState,
    ScheduleIn,
)
from services.segmenter.template_check import check_template
from shared.db import OneTenant
from shared.http import InputError, Pool, Tenant, not_found
from shared.templating import parse_template
from shared.validation import Text, Timestamp

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


def campaign_out(row: object) -> CampaignOut:
    return CampaignOut.model_validate(dict(row))  # type: ignore[call-overload]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CampaignOut)
async def create_campaign(
    body: CampaignCreate, tenant: Tenant, pool: Pool, lifecycle: LifecycleDep, request: Request
) -> CampaignOut:
    """Create a draft campaign (``start: true`` starts it at once, a ``schedule`` at that time).
    Unknown shortcodes, unapproved Content templates, unknown audience references, a schedule in
    the past or in an unknown zone answer 422 naming the field, and nothing is created. A template
    that renders empty or past WhatsApp's limits for part of the audience is not refused: the
    answer's ``warnings`` say for how many recipients and why (they will fail without being sent)."""
    if body.schedule is not None:
        # Checked before anything is stored: a refused schedule leaves no draft behind.
        tenant_timezone = await pool.fetchval("SELECT timezone FROM tenants WHERE id = $1", tenant.tenant_id)
        resolve_schedule(
            at=body.schedule.at,
            timezone=body.schedule.timezone,
            tenant_timezone=tenant_timezone,
            now=lifecycle.clock.now(),
        )
    row = await campaigns.create_campaign(
        pool,
        tenant_id=tenant.tenant_id,
        data=body,
        content_is_approved=request.app.state.content_is_approved,
    )
    check = await check_template(
        pool,
        tenant_id=tenant.tenant_id,
        tz=tenant.timezone,
        audience=body.audience,
        template=parse_template(row["template"]),
        now=lifecycle.clock.now(),
    )
    if body.start:
        row = await lifecycle.start(tenant.tenant_id, row["id"])
    elif body.schedule is not None:
        row = await lifecycle.schedule(
            tenant.tenant_id, row["id"], at=body.schedule.at, timezone=body.schedule.timezone
        )
    created = campaign_out(row)
    if check is not None:
        created.warnings = check.warnings
    return created


@router.get("", response_model=list[CampaignOut])
async def list_campaigns(
    tenant: Tenant,
    pool: Pool,
    state: Annotated[
        list[CampaignState] | None,
        Query(max_length=8, description="Only campaigns in these states (repeatable)."),
    ] = None,
    kind: Annotated[
        list[CampaignKind] | None,
        Query(max_length=3, description="Only campaigns of these kinds (repeatable)."),
    ] = None,
    name: Annotated[
        Annotated[str, Text(200, min_length=1)] | None,
        Query(description="Only campaigns whose name contains this (case-insensitive)."),
    ] = None,
    created_after: Annotated[
        Timestamp | None, Query(description="Only campaigns created at or after this instant.")
    ] = None,
    created_before: Annotated[
        Timestamp | None, Query(description="Only campaigns created before this instant.")
    ] = None,
    before: Annotated[
        Timestamp | None,
        Query(
            description="The next page: the `created_at` of the previous page's last campaign (with"
            " `before_id`, its `id`). Alone, only campaigns created before it."
        ),
    ] = None,
    before_id: Annotated[
        UUID | None, Query(description="The `id` of the previous page's last campaign (with `before`).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[CampaignOut]:
    """The tenant's campaigns, newest first, a page at a time: pass the last campaign's
    ``created_at`` and ``id`` as ``before`` and ``before_id`` for the next page (fewer than
    ``limit`` campaigns: the last page). Filters combine; a bad value answers 422 naming it."""
    if before_id is not None and before is None:
        raise InputError.single("before_id", "give before (the created_at of the same campaign) with it")
    rows = await OneTenant(pool).fetch(
        tenant.tenant_id,
        queries.LIST_CAMPAIGNS,
        tenant.tenant_id,
        before,
        before_id,
        limit,
        list(dict.fromkeys(state)) if state else None,
        list(dict.fromkeys(kind)) if kind else None,
        name,
        created_after,
        created_before,
    )
    return [campaign_out(row) for row in rows]


@router.get("/{campaign_id}", response_model=CampaignOut)
async def show_campaign(campaign_id: UUID, tenant: Tenant, pool: Pool) -> CampaignOut:
    try:
        return campaign_out(await campaigns.get_campaign(pool, tenant.tenant_id, campaign_id))
    except campaigns.CampaignNotFound:
        raise not_found("campaign not found") from None


async def _act(operation: Awaitable[asyncpg.Record]) -> CampaignOut:
    """Run a lifecycle operation and answer 404/409 the same way for every action."""
    try:
        row = await operation
    except campaigns.CampaignNotFound:
        raise not_found("campaign not found") from None
    except campaigns.InvalidTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return campaign_out(row)


@router.post("/{campaign_id}/start", response_model=CampaignOut)
async def start(campaign_id: UUID, tenant: Tenant, lifecycle: LifecycleDep) -> CampaignOut:
    """Snapshot the audience and start sending (a scheduled campaign starts now instead)."""
    return await _act(lifecycle.start(tenant.tenant_id, campaign_id))


@router.post("/{campaign_id}/schedule", response_model=CampaignOut)
async def schedule(
    campaign_id: UUID, body: ScheduleIn, tenant: Tenant, lifecycle: LifecycleDep
) -> CampaignOut:
    """Schedule a draft, or reschedule a campaign that has not started yet (409 once it has); its
    audience is taken when it starts. Cancel it before then with ``/cancel``."""
    return await _act(
        lifecycle.schedule(tenant.tenant_id, campaign_id, at=body.at, timezone=body.timezone, field="")
    )


@router.post("/{campaign_id}/pause", response_model=CampaignOut)
async def pause(
    campaign_id: UUID, tenant: Tenant, lifecycle: LifecycleDep, body: CampaignAction | None = None
) -> CampaignOut:
    """No Twilio call for this campaign starts later than one second after this answers."""
    return await _act(lifecycle.pause(tenant.tenant_id, campaign_id, body.reason if body else None))


@router.post("/{campaign_id}/resume", response_model=CampaignOut)
async def resume(campaign_id: UUID, tenant: Tenant, lifecycle: LifecycleDep) -> CampaignOut:
    """Continue with the recipients left; nobody already sent to is sent to again."""
    return await _act(lifecycle.resume(tenant.tenant_id, campaign_id))


@router.post("/{campaign_id}/cancel", response_model=CampaignOut)
async def cancel(campaign_id: UUID, tenant: Tenant, lifecycle: LifecycleDep) -> CampaignOut:
    """End the campaign; recipients not yet sent to are marked ``cancelled``."""
    return await _act(lifecycle.cancel(tenant.tenant_id, campaign_id))


@router.post("/{campaign_id}/retry-failed", response_model=CampaignOut)
async def retry_failed(campaign_id: UUID, tenant: Tenant, lifecycle: LifecycleDep) -> CampaignOut:
    """Send again to the recipients of a completed campaign that ended ``failed``."""
    return await _act(lifecycle.retry_failed(tenant.tenant_id, campaign_id))
