"""API keys (a tenant's own and the operator's view of a tenant's) and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.segmenter import api_keys
from shared import audit
from shared.http import Operator, Pool, Tenant, not_found
from shared.validation import INT8_MAX, Text

router = APIRouter(prefix="/v1", tags=["api keys"])

# The longest overlap a rotation grants the replaced key: long enough for a slow deploy cycle.
MAX_OVERLAP_S = 30 * 24 * 3600

KeyId = Annotated[int, Field(ge=1, le=INT8_MAX)]


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it; never the key.")
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Text(100, min_length=1)]
    expires_at: datetime | None = Field(default=None, description="Optional; must be in the future.")

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2030-01-01T00:00:00Z)")
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


class ApiKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Text(100, min_length=1)] | None = Field(
        default=None, description="Name of the new key (default: the replaced key's)."
    )
    overlap_s: int = Field(
        default=0,
        ge=0,
        le=MAX_OVERLAP_S,
        description="How long the replaced key keeps working (0: not at all).",
    )


class ApiKeyCreated(BaseModel):
    key: ApiKeyOut
    api_key: str = Field(description="Shown once; only its hash is stored.")


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    tenant_id: UUID | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_before_id: int | None


def _out(row: Any) -> ApiKeyOut:
    return ApiKeyOut(**dict(row))


def _too_many(exc: api_keys.TooManyKeys) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, str(exc))


# A tenant's own keys ------------------------------------------------------------------------------


@router.get("/tenant/api-keys", response_model=list[ApiKeyOut])
async def my_keys(tenant: Tenant, pool: Pool, include_inactive: bool = False) -> list[ApiKeyOut]:
    """The tenant's keys (by default only those still usable)."""
    rows = await api_keys.list_keys(pool, tenant.tenant_id, include_inactive=include_inactive)
    return [_out(row) for row in rows]


@router.post("/tenant/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_my_key(body: ApiKeyCreate, tenant: Tenant, pool: Pool) -> ApiKeyCreated:
    """A new named key, e.g. one per integration. The key is shown once."""
    try:
        row, key = await api_keys.create_key(
            pool,
            tenant.tenant_id,
            name=body.name,
            expires_at=body.expires_at,
            actor=audit.key_actor(tenant.api_key_prefix),
        )
    except api_keys.TooManyKeys as exc:
        raise _too_many(exc) from None
    return ApiKeyCreated(key=_out(row), api_key=key)


@router.post(
    "/tenant/api-keys/{key_id}/rotate", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated
)
async def rotate_my_key(key_id: KeyId, body: ApiKeyRotate, tenant: Tenant, pool: Pool) -> ApiKeyCreated:
    """Replace a key: the new one works at once, the old one for ``overlap_s`` more seconds
    (409 when the tenant's other active keys, those still in an overlap included, fill the bound)."""
    try:
        row, key, _ = await api_keys.rotate(
            pool,
            tenant.tenant_id,
            key_id=key_id,
            name=body.name,
            overlap_s=body.overlap_s,
            actor=audit.key_actor(tenant.api_key_prefix),
        )
    except api_keys.KeyNotFound:
        raise not_found("API key not found") from None
    except api_keys.TooManyKeys as exc:
        raise _too_many(exc) from None
    return ApiKeyCreated(key=_out(row), api_key=key)


@router.delete("/tenant/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_my_key(key_id: KeyId, tenant: Tenant, pool: Pool) -> Response:
    try:
        await api_keys.revoke_key(
            pool, tenant.tenant_id, key_id, actor=audit.key_actor(tenant.api_key_prefix)
        )
    except api_keys.KeyNotFound:
        raise not_found("API key not found") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# The operator's view ------------------------------------------------------------------------------


@router.get("/operator/tenants/{tenant_id}/api-keys", response_model=list[ApiKeyOut])
async def tenant_keys(
    tenant_id: UUID, _: Operator, pool: Pool, include_inactive: bool = False
) -> list[ApiKeyOut]:
    return [_out(row) for row in await api_keys.list_keys(pool, tenant_id, include_inactive=include_inactive)]


@router.post("/operator/tenants/{tenant_id}/api-keys", status_code=status.HTTP_201_CREATED)
async def rotate_tenant_keys(
    tenant_id: UUID, operator: Operator, pool: Pool, body: ApiKeyRotate | None = None
) -> dict[str, Any]:
    """Issue a new key and retire every active key of the tenant (after ``overlap_s``, default at once)."""
    body = body or ApiKeyRotate()
    try:
        row, key, _ = await api_keys.rotate(
            pool, tenant_id, key_id=None, name=body.name, overlap_s=body.overlap_s, actor=operator
        )
    except api_keys.TenantNotFound:
        raise not_found("tenant not found") from None
    return {"api_key": key, "key": _out(row).model_dump(mode="json")}


@router.delete("/operator/tenants/{tenant_id}/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_tenant_key(tenant_id: UUID, key_id: KeyId, operator: Operator, pool: Pool) -> Response:
    try:
        await api_keys.revoke_key(pool, tenant_id, key_id, actor=operator)
    except api_keys.KeyNotFound:
        raise not_found("API key not found") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/operator/audit", response_model=AuditPage)
async def audit_log(
    _: Operator,
    pool: Pool,
    tenant_id: UUID | None = None,
    action: Annotated[str, Text(100)] | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=INT8_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Operator and key actions, newest first; page with ``before_id``."""
    entries = await audit.entries(pool, tenant_id=tenant_id, action=action, before_id=before_id, limit=limit)
    return AuditPage(
        entries=[AuditEntry(**entry) for entry in entries],
        next_before_id=entries[-1]["id"] if len(entries) == limit else None,
    )
