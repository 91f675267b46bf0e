"""Suppressions: list, add, remove, bulk import (per tenant, numbers in E.164)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from services.segmenter import suppressions
from services.segmenter.audience import statistics
from services.segmenter.bulk import ONE_BULK_REQUEST_PER_TENANT
from shared.http import Pool, Tenant, not_found
from shared.validation import Text

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SuppressionIn(Strict):
    phone: Annotated[str, Text(40, min_length=3)] = Field(
        description="Any format; normalised with the default region."
    )
    reason: Annotated[str, Text(500)] | None = None


class SuppressionImport(Strict):
    phones: list[Annotated[str, Text(40)]] = Field(min_length=1, max_length=suppressions.MAX_IMPORT)
    reason: Annotated[str, Text(500)] | None = None


class SuppressionOut(BaseModel):
    phone_e164: str
    source: str
    reason: str | None
    created_at: datetime


class SuppressionPage(BaseModel):
    items: list[SuppressionOut]
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


class ImportResult(BaseModel):
    added: int
    already_suppressed: int


@router.get("", response_model=SuppressionPage)
async def list_suppressions(
    tenant: Tenant,
    pool: Pool,
    after: Annotated[Annotated[str, Text(40)] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SuppressionPage:
    """Suppressed numbers in E.164 order, a page at a time."""
    rows = await suppressions.list_suppressions(pool, tenant.tenant_id, after=after, limit=limit)
    items = [SuppressionOut(**vars(row)) for row in rows]
    return SuppressionPage(items=items, next_after=items[-1].phone_e164 if len(items) == limit else None)


@router.get("/{phone}", response_model=SuppressionOut)
async def show_suppression(
    phone: Annotated[str, Path(max_length=40)], tenant: Tenant, pool: Pool
) -> SuppressionOut:
    try:
        row = await suppressions.get_suppression(pool, tenant.tenant_id, phone, tenant.default_region)
    except suppressions.NotSuppressed:
        raise not_found("number not suppressed") from None
    return SuppressionOut(**vars(row))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SuppressionOut)
async def add_suppression(
    body: SuppressionIn, tenant: Tenant, pool: Pool, response: Response
) -> SuppressionOut:
    """Suppress one number (200 when it already was). It gets nothing from now on, mid-campaign too."""
    added, _ = await suppressions.add(
        pool,
        tenant.tenant_id,
        [body.phone],
        region=tenant.default_region,
        source="api",
        reason=body.reason,
        field="phone",
    )
    if not added:
        response.status_code = status.HTTP_200_OK
    return SuppressionOut(
        **vars(await suppressions.get_suppression(pool, tenant.tenant_id, body.phone, tenant.default_region))
    )


@router.post("/import", response_model=ImportResult, dependencies=[ONE_BULK_REQUEST_PER_TENANT])
async def import_suppressions(body: SuppressionImport, tenant: Tenant, pool: Pool) -> ImportResult:
    """Suppress many numbers at once. One invalid number rejects the whole import (422 naming each
    bad entry), so a file is either taken whole or not at all. One bulk request per tenant at a
    time: a second one meanwhile (an import or a booking upsert or delete) gets 409."""
    added, already = await suppressions.add(
        pool,
        tenant.tenant_id,
        body.phones,
        region=tenant.default_region,
        source="import",
        reason=body.reason,
        field="phones",
    )
    await statistics.STATISTICS.after_write(pool, {"suppressions": added})
    return ImportResult(added=added, already_suppressed=already)


@router.delete("/{phone}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_suppression(
    phone: Annotated[str, Path(max_length=40)],
    tenant: Tenant,
    pool: Pool,
    reason: Annotated[Annotated[str, Text(500)] | None, Query()] = None,
) -> Response:
    """Remove a number from the list (for instance after the person opted in again)."""
    try:
        await suppressions.remove(pool, tenant.tenant_id, phone, region=tenant.default_region, reason=reason)
    except suppressions.NotSuppressed:
        raise not_found("number not suppressed") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
