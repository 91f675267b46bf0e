"""Test sends, manual sends, and the approved Content templates a campaign may use."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from services.segmenter import sends
from services.segmenter.deps import LifecycleDep, SecretBoxDep, SettingsDep
from services.segmenter.routes_campaigns import campaign_out
from services.segmenter.schemas import CampaignOut
from shared.http import Pool, Tenant
from shared.openapi import ErrorDetail
from shared.templating import MAX_VARIABLE_CHARS
from shared.twilio_client import TwilioError
from shared.validation import JsonObject, Text

router = APIRouter(prefix="/v1", tags=["sends"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TestSend(Strict):
    template: JsonObject = Field(
        description='{"body": "..."} or {"content_sid": "HX...", "variables": {...}}'
    )
    name: Annotated[str, Text(200)] | None = None


class ManualRecipient(Strict):
    phone: Annotated[str, Text(40, min_length=3)]
    variables: dict[Annotated[str, Text(64)], Annotated[str, Text(MAX_VARIABLE_CHARS)]] = Field(
        default_factory=dict, max_length=50, description="Shortcode values for this number (text)."
    )


class ManualSend(Strict):
    template: JsonObject
    recipients: list[ManualRecipient] = Field(min_length=1, max_length=sends.MAX_MANUAL_RECIPIENTS)
    name: Annotated[str, Text(200)] | None = None


class TemplateOut(BaseModel):
    sid: str
    friendly_name: str | None
    language: str | None
    variables: dict[str, Any]
    types: list[str]
    category: str | None


@router.post("/sends/test", status_code=status.HTTP_201_CREATED, response_model=CampaignOut)
async def test_send(
    body: TestSend,
    tenant: Tenant,
    pool: Pool,
    lifecycle: LifecycleDep,
    box: SecretBoxDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Send a template to the tenant's test numbers, rendered with a sample recipient. It runs as
    a small campaign of kind ``test``: follow it, and read its log, like any campaign. The
    tenant's frequency cap does not apply to it and does not count it
    (``frequency_cap_exempt: true``)."""
    row = await sends.send_test(
        pool,
        lifecycle,
        tenant_id=tenant.tenant_id,
        template=body.template,
        name=body.name,
        content_check=sends.content_checker(pool, box, settings),
    )
    return campaign_out(row)


@router.post("/sends/manual", status_code=status.HTTP_201_CREATED, response_model=CampaignOut)
async def manual_send(
    body: ManualSend,
    tenant: Tenant,
    pool: Pool,
    lifecycle: LifecycleDep,
    box: SecretBoxDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Send a template to a list of numbers, each with optional shortcode values, without a
    segment. One message per number; an invalid number or unknown shortcode answers 422. The
    tenant's frequency cap does not apply to it and does not count it
    (``frequency_cap_exempt: true``)."""
    row = await sends.send_manual(
        pool,
        lifecycle,
        tenant_id=tenant.tenant_id,
        region=tenant.default_region,
        template=body.template,
        recipients=[(r.phone, r.variables) for r in body.recipients],
        name=body.name,
        content_check=sends.content_checker(pool, box, settings),
    )
    return campaign_out(row)


@router.get(
    "/templates",
    response_model=list[TemplateOut],
    responses={
        502: {"description": "Twilio's Content API failed or could not be reached.", "model": ErrorDetail}
    },
)
async def list_templates(
    tenant: Tenant, pool: Pool, box: SecretBoxDep, settings: SettingsDep
) -> list[TemplateOut]:
    """The WhatsApp-approved Content templates of the tenant's Twilio account (only these can be
    chosen for a campaign)."""
    try:
        templates = await sends.approved_templates(pool, box, settings, tenant.tenant_id)
    except TwilioError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"Twilio Content API: {exc.message}") from None
    return [
        TemplateOut(
            sid=t.sid,
            friendly_name=t.friendly_name,
            language=t.language,
            variables=t.variables,
            types=list(t.types),
            category=t.category,
        )
        for t in templates
    ]
