"""Audience preview over HTTP."""

from __future__ import annotations

from fastapi import APIRouter

from services.segmenter.audience.preview import PreviewOut, PreviewRequest, preview_audience
from shared.http import Pool, Tenant

router = APIRouter(prefix="/v1/audiences", tags=["audiences"])


@router.post("/preview", response_model=PreviewOut)
async def preview(body: PreviewRequest, tenant: Tenant, pool: Pool) -> PreviewOut:
    """Count an audience and show a sample of up to 20 recipients, at ``as_of`` or now. With a
    ``template``, also count the recipients it would render empty or past WhatsApp's limits for
    (``template_check``: they would fail without being sent).

    Excluded customers are counted once each, by the first reason that applies, in this order:
    no valid phone, suppressed number (when ``exclude_suppressed``), number already taken by
    another chosen customer. ``excluded.frequency_capped`` counts the recipients, among ``total``,
    whose number already had the tenant's frequency cap of marketing messages in its window: a
    campaign started now skips them (``skipped``, reason ``frequency_capped``); ``sendable`` is
    ``total`` less them. When customers share a number, the one whose latest matching
    appointment starts last gets the message. Windows are in the tenant's time zone. A campaign
    started with the same audience and unchanged data gets exactly ``total`` recipients. Unknown
    service, location or status references answer 422 naming the field.
    """
    return await preview_audience(
        pool,
        tenant_id=tenant.tenant_id,
        tz=tenant.timezone,
        audience=body.audience(),
        as_of=body.as_of,
        template=None if body.template is None else body.template.model_dump(),
    )
