"""A tenant's services and locations as the booking data names them: the choices of an
audience's ``service_ids`` and ``location_ids`` filters, with their names."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.segmenter.booking import queries
from shared.db import OneTenant
from shared.http import Pool, Tenant
from shared.validation import Text

router = APIRouter(prefix="/v1", tags=["booking"])

After = Annotated[
    Annotated[str, Text(200)] | None,
    Query(description="`next_after` of the previous page: items after this external id."),
]
NameFilter = Annotated[
    Annotated[str, Text(200, min_length=1)] | None,
    Query(description="Only those whose name contains this (case-insensitive)."),
]
Limit = Annotated[int, Query(ge=1, le=1000)]


class ServiceOut(BaseModel):
    external_id: str = Field(description="The booking system's id: what `audience.service_ids` takes.")
    name: str


class LocationOut(BaseModel):
    external_id: str = Field(description="The booking system's id: what `audience.location_ids` takes.")
    name: str
    address: str | None


class ServicePage(BaseModel):
    items: list[ServiceOut]
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


class LocationPage(BaseModel):
    items: list[LocationOut]
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


Item = TypeVar("Item", ServiceOut, LocationOut)


async def _page(
    tenant: Tenant, pool: Pool, query: str, model: type[Item], after: str | None, name: str | None, limit: int
) -> tuple[list[Item], str | None]:
    """One page of a catalogue in external-id order, and the ``after`` of the next (None when
    this page is the last)."""
    rows = await OneTenant(pool).fetch(tenant.tenant_id, query, tenant.tenant_id, after, name, limit)
    items = [model(**dict(row)) for row in rows]
    return items, items[-1].external_id if len(items) == limit else None


@router.get("/services", response_model=ServicePage)
async def list_services(
    tenant: Tenant, pool: Pool, after: After = None, name: NameFilter = None, limit: Limit = 100
) -> ServicePage:
    """The tenant's services in external-id order, a page at a time."""
    items, next_after = await _page(tenant, pool, queries.LIST_SERVICES, ServiceOut, after, name, limit)
    return ServicePage(items=items, next_after=next_after)


@router.get("/locations", response_model=LocationPage)
async def list_locations(
    tenant: Tenant, pool: Pool, after: After = None, name: NameFilter = None, limit: Limit = 100
) -> LocationPage:
    """The tenant's locations in external-id order, a page at a time."""
    items, next_after = await _page(tenant, pool, queries.LIST_LOCATIONS, LocationOut, after, name, limit)
    return LocationPage(items=items, next_after=next_after)
