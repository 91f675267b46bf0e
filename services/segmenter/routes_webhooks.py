"""Outbound webhooks of a tenant: endpoints (the signing secret is shown once, at creation), the
delivery log and resends. Deliveries are made by the trackers (services/tracker/outbound_*)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.segmenter import webhook_endpoints as endpoints
from services.segmenter.deps import SecretBoxDep, SettingsDep
from shared import audit
from shared.http import InputError, Pool, Tenant, not_found
from shared.outbound_events import EVENT_TYPES
from shared.settings import Settings
from shared.url_checks import webhook_url_reason
from shared.validation import INT8_MAX, Text

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

DeliveryId = Annotated[int, Field(ge=1, le=INT8_MAX)]
DeliveryState = Literal["pending", "delivering", "succeeded", "failed"]


def _known_event_type(value: str) -> str:
    if value not in EVENT_TYPES:
        raise ValueError(f"unknown event type; one of {', '.join(EVENT_TYPES)}")
    return value


EventType = Annotated[
    str, Field(json_schema_extra={"enum": list(EVENT_TYPES)}), AfterValidator(_known_event_type)
]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES))]
Url = Annotated[str, Text(2000, min_length=1)]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url = Field(description="https outside development; must reach a public address.")
    event_types: EventTypes = Field(description="The events this endpoint receives.")
    description: Annotated[str, Text(200)] = ""


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Annotated[str, Text(200)] | None = None
    enabled: bool | None = Field(
        default=None,
        description="true re-enables a disabled endpoint (its waiting deliveries resume); false disables it.",
    )


class EndpointOut(BaseModel):
    id: UUID
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None = Field(
        description="Why the endpoint was disabled (by the tenant, or failing)."
    )
    failing_since: datetime | None = Field(description="Start of the current run of failed attempts.")
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


class EndpointCreated(BaseModel):
    endpoint: EndpointOut
    secret: str = Field(description='The signing secret: shown once (README, "Outbound webhooks").')


class DeliveryOut(BaseModel):
    id: int
    endpoint_id: UUID
    event_id: str = Field(description="The event's id (a resend carries the same).")
    event_type: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None = Field(description="When the next attempt is due (pending only).")
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_response: str | None = Field(description="The start of the last answer's body.")
    last_error: str | None
    resend_of: int | None
    created_at: datetime


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    duration_ms: int
    status_code: int | None
    response: str | None
    error: str | None


class DeliveryDetail(DeliveryOut):
    event: dict[str, Any] = Field(description="The body that was signed and sent.")
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_before_id: int | None


def _checked_url(url: str | None, settings: Settings) -> str | None:
    if url is None:
        return None
    reason = webhook_url_reason(url, strict=settings.strict_webhook_urls)
    if reason:
        hint = (
            "; outside development it must be https to a public host" if settings.strict_webhook_urls else ""
        )
        raise InputError.single("url", f"the URL {reason}{hint}", type="webhook_url")
    return url


@router.get("/endpoints", response_model=list[EndpointOut])
async def list_endpoints(tenant: Tenant, pool: Pool) -> list[EndpointOut]:
    return [EndpointOut(**dict(row)) for row in await endpoints.list_endpoints(pool, tenant.tenant_id)]


@router.post("/endpoints", status_code=status.HTTP_201_CREATED, response_model=EndpointCreated)
async def create_endpoint(
    body: EndpointCreate, tenant: Tenant, pool: Pool, settings: SettingsDep, box: SecretBoxDep
) -> EndpointCreated:
    """Register an endpoint. The answer carries its signing secret, shown only this once."""
    url = _checked_url(body.url, settings)
    assert url is not None
    try:
        row, secret = await endpoints.create_endpoint(
            pool,
            box,
            tenant.tenant_id,
            url=url,
            description=body.description,
            event_types=sorted(set(body.event_types)),
            actor=audit.key_actor(tenant.api_key_prefix),
        )
    except endpoints.TooManyEndpoints as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return EndpointCreated(endpoint=EndpointOut(**dict(row)), secret=secret)


@router.get("/endpoints/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(endpoint_id: UUID, tenant: Tenant, pool: Pool) -> EndpointOut:
    """An endpoint, with whether it is enabled and, if it was disabled, when and why."""
    try:
        return EndpointOut(**dict(await endpoints.get_endpoint(pool, tenant.tenant_id, endpoint_id)))
    except endpoints.EndpointNotFound:
        raise not_found("webhook endpoint not found") from None


@router.patch("/endpoints/{endpoint_id}", response_model=EndpointOut)
async def update_endpoint(
    endpoint_id: UUID, body: EndpointUpdate, tenant: Tenant, pool: Pool, settings: SettingsDep
) -> EndpointOut:
    try:
        row = await endpoints.update_endpoint(
            pool,
            tenant.tenant_id,
            endpoint_id,
            url=_checked_url(body.url, settings),
            description=body.description,
            event_types=sorted(set(body.event_types)) if body.event_types is not None else None,
            enabled=body.enabled,
            actor=audit.key_actor(tenant.api_key_prefix),
        )
    except endpoints.EndpointNotFound:
        raise not_found("webhook endpoint not found") from None
    return EndpointOut(**dict(row))


@router.delete("/endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(endpoint_id: UUID, tenant: Tenant, pool: Pool) -> Response:
    """Remove an endpoint, its deliveries and their attempts."""
    try:
        await endpoints.delete_endpoint(
            pool, tenant.tenant_id, endpoint_id, actor=audit.key_actor(tenant.api_key_prefix)
        )
    except endpoints.EndpointNotFound:
        raise not_found("webhook endpoint not found") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    tenant: Tenant,
    pool: Pool,
    endpoint_id: UUID | None = None,
    state: DeliveryState | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=INT8_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryPage:
    """Deliveries newest first; page with ``before_id`` (the previous page's ``next_before_id``)."""
    rows = await endpoints.list_deliveries(
        pool, tenant.tenant_id, endpoint_id=endpoint_id, state=state, before_id=before_id, limit=limit
    )
    return DeliveryPage(
        items=[DeliveryOut(**dict(row)) for row in rows],
        next_before_id=rows[-1]["id"] if len(rows) == limit else None,
    )


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(delivery_id: DeliveryId, tenant: Tenant, pool: Pool) -> DeliveryDetail:
    """A delivery, the event it carries and every attempt with its answer."""
    try:
        delivery, attempts = await endpoints.get_delivery(pool, tenant.tenant_id, delivery_id)
    except endpoints.DeliveryNotFound:
        raise not_found("webhook delivery not found") from None
    return DeliveryDetail(**delivery, attempt_log=[AttemptOut(**dict(a)) for a in attempts])


@router.post(
    "/deliveries/{delivery_id}/resend", status_code=status.HTTP_202_ACCEPTED, response_model=DeliveryOut
)
async def resend_delivery(delivery_id: DeliveryId, tenant: Tenant, pool: Pool) -> DeliveryOut:
    """Deliver the same event again (same event id and body), as a new delivery due at once
    (409 while the endpoint is disabled)."""
    try:
        row = await endpoints.resend(pool, tenant.tenant_id, delivery_id)
    except endpoints.DeliveryNotFound:
        raise not_found("webhook delivery not found") from None
    except endpoints.EndpointDisabled as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return DeliveryOut(**dict(row))
