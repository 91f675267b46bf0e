"""Tenants: operator endpoints (create, list, change) and a tenant's own settings."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from services.segmenter import credits, tenants
from services.segmenter.deps import PublisherDep, SecretBoxDep, SettingsDep
from services.segmenter.routes_credits import BalanceOut, balance_out
from services.segmenter.schemas import (
    OperatorTenantUpdate,
    TenantCreate,
    TenantCreated,
    TenantOut,
    TenantPage,
    TenantSettingsUpdate,
)
from shared import audit
from shared.http import InputError, Operator, Pool, Tenant, not_found
from shared.validation import Text, Timestamp

router = APIRouter(prefix="/v1", tags=["tenants"])


@router.post("/operator/tenants", status_code=status.HTTP_201_CREATED, response_model=TenantCreated)
async def create_tenant(
    body: TenantCreate,
    operator: Operator,
    pool: Pool,
    publisher: PublisherDep,
    box: SecretBoxDep,
    settings: SettingsDep,
) -> TenantCreated:
    """Create a tenant. The API key in the answer is shown once; only its hash is kept."""
    row, api_key = await tenants.create_tenant(
        pool, publisher, box, body, default_rate=settings.default_rate_per_second
    )
    await audit.record(
        pool, actor=operator, action="tenant.created", tenant_id=row["id"], detail={"name": body.name}
    )
    return TenantCreated(tenant=tenants.tenant_out(row, settings.public_base_url), api_key=api_key)


@router.get("/operator/tenants", response_model=TenantPage)
async def list_tenants(
    _: Operator,
    pool: Pool,
    name: Annotated[
        Annotated[str, Text(200, min_length=1)] | None,
        Query(description="Only tenants whose name contains this (case-insensitive)."),
    ] = None,
    active: Annotated[
        bool | None, Query(description="Only active (true) or deactivated (false) tenants.")
    ] = None,
    before: Annotated[Timestamp | None, Query(description="`next_before` of the previous page.")] = None,
    before_id: Annotated[UUID | None, Query(description="`next_before_id` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> TenantPage:
    """Every tenant, newest first, with its rate, messaging limit and credits available; a page at
    a time (``next_before`` and ``next_before_id``)."""
    if before_id is not None and before is None:
        raise InputError.single("before_id", "give before (next_before of the same page) with it")
    return await tenants.list_tenants(
        pool, name=name, active=active, before=before, before_id=before_id, limit=limit
    )


class OperatorTenantOut(BaseModel):
    """One tenant as the operator sees it: its settings and its credits."""

    tenant: TenantOut
    credits: BalanceOut | None = Field(description="Null for a tenant without a credit account.")


@router.get("/operator/tenants/{tenant_id}", response_model=OperatorTenantOut)
async def operator_show_tenant(
    tenant_id: UUID, _: Operator, pool: Pool, settings: SettingsDep
) -> OperatorTenantOut:
    """A tenant's settings (rate and messaging limit included) and its credit balance."""
    try:
        row = await tenants.get_tenant(pool, tenant_id)
    except tenants.TenantNotFound:
        raise not_found("tenant not found") from None
    try:
        balance: BalanceOut | None = balance_out(
            await credits.balance(pool, tenant_id), settings.credits_enabled
        )
    except credits.AccountNotFound:
        balance = None
    return OperatorTenantOut(tenant=tenants.tenant_out(row, settings.public_base_url), credits=balance)


@router.patch("/operator/tenants/{tenant_id}", response_model=TenantOut)
async def operator_update_tenant(
    tenant_id: UUID,
    body: OperatorTenantUpdate,
    operator: Operator,
    pool: Pool,
    publisher: PublisherDep,
    box: SecretBoxDep,
    settings: SettingsDep,
    active: bool | None = None,
) -> TenantOut:
    """Change any setting of a tenant, its rate and WhatsApp messaging limit included (they apply
    to a running campaign within 2 s). Setting a messaging limit counts the numbers the tenant
    messaged in the last 24 hours against it at once."""
    try:
        row = await tenants.update_tenant(
            pool,
            publisher,
            box,
            tenant_id,
            body,
            active=active,
            messaging_window_s=settings.messaging_window_s,
        )
    except tenants.TenantNotFound:
        raise not_found("tenant not found") from None
    # Which settings changed, never their values (a Twilio auth token may be among them).
    changed = sorted(body.model_dump(exclude_unset=True)) + (["active"] if active is not None else [])
    await audit.record(
        pool,
        actor=operator,
        action="tenant.updated",
        tenant_id=tenant_id,
        detail={"changed": changed, **({"active": active} if active is not None else {})},
    )
    return tenants.tenant_out(row, settings.public_base_url)


@router.get("/tenant", response_model=TenantOut)
async def my_tenant(tenant: Tenant, pool: Pool, settings: SettingsDep) -> TenantOut:
    return tenants.tenant_out(await tenants.get_tenant(pool, tenant.tenant_id), settings.public_base_url)


@router.patch("/tenant", response_model=TenantOut)
async def update_my_tenant(
    body: TenantSettingsUpdate,
    tenant: Tenant,
    pool: Pool,
    publisher: PublisherDep,
    box: SecretBoxDep,
    settings: SettingsDep,
) -> TenantOut:
    """Change the tenant's own settings. The rate and the messaging limit are the operator's
    (``PATCH /v1/operator/tenants/{id}``): naming ``rate_per_second``, ``unlimited_rate`` or
    ``messaging_limit`` here answers 422."""
    row = await tenants.update_tenant(pool, publisher, box, tenant.tenant_id, body)
    return tenants.tenant_out(row, settings.public_base_url)
