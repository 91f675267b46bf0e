"""Tenants: operator endpoints (create, change) and a tenant's own settings."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from services.segmenter import tenants
from services.segmenter.deps import PublisherDep, SecretBoxDep, SettingsDep
from services.segmenter.schemas import (
    OperatorTenantUpdate,
    TenantCreate,
    TenantCreated,
    TenantOut,
    TenantSettingsUpdate,
)
from shared import audit
from shared.http import Operator, Pool, Tenant, not_found

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
