"""HTTP input of the tenant's replies: all of them, a campaign's, a recipient's (keyset pages)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from services.tracker import replies
from services.tracker.api import After, Limit, PhoneFilter, RecipientId
from services.tracker.reports import campaign_exists
from shared.http import InputError, Pool, Tenant, not_found
from shared.phones import InvalidPhone, to_e164

router = APIRouter(prefix="/v1", tags=["replies"])

PAGE_DESCRIPTION = (
    "Items in id order with `next_after` (pass it as `after` for the next page; null on the last)."
    " A reply is attributed to the last message the engine sent its number in the 24 hours before"
    " it arrived (`campaign_id`, `recipient_id`; null when there was none). `action` is `opt_out`"
    " or `opt_in` for a STOP or START keyword, else null."
)


@router.get(
    "/replies",
    description="Every message the tenant's customers sent, attributed or not. " + PAGE_DESCRIPTION,
)
async def list_replies(
    tenant: Tenant,
    pool: Pool,
    phone: PhoneFilter = None,
    after: After = 0,
    limit: Limit = 100,
) -> dict[str, Any]:
    phone_e164 = None
    if phone:
        try:
            phone_e164 = to_e164(phone, tenant.default_region)
        except InvalidPhone as exc:
            raise InputError.single("phone", str(exc)) from exc
    return await replies.tenant_replies(
        pool, tenant_id=tenant.tenant_id, phone_e164=phone_e164, after=after, limit=limit
    )


@router.get(
    "/campaigns/{campaign_id}/replies",
    description="The replies attributed to one campaign's messages. " + PAGE_DESCRIPTION,
)
async def list_campaign_replies(
    campaign_id: UUID, tenant: Tenant, pool: Pool, after: After = 0, limit: Limit = 100
) -> dict[str, Any]:
    if not await campaign_exists(pool, tenant_id=tenant.tenant_id, campaign_id=campaign_id):
        raise not_found("campaign not found")
    return await replies.campaign_replies(
        pool, tenant_id=tenant.tenant_id, campaign_id=campaign_id, after=after, limit=limit
    )


@router.get(
    "/campaigns/{campaign_id}/recipients/{recipient_id}/replies",
    description="The replies attributed to the message one recipient of a campaign got. " + PAGE_DESCRIPTION,
)
async def list_recipient_replies(
    campaign_id: UUID,
    recipient_id: RecipientId,
    tenant: Tenant,
    pool: Pool,
    after: After = 0,
    limit: Limit = 100,
) -> dict[str, Any]:
    page = await replies.recipient_replies(
        pool,
        tenant_id=tenant.tenant_id,
        campaign_id=campaign_id,
        recipient_id=recipient_id,
        after=after,
        limit=limit,
    )
    if page is None:
        raise not_found("recipient not found")
    return page
