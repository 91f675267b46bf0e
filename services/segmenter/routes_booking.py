"""Bulk booking data API: upsert and delete by external id, up to 10,000 rows per request.

Each request is all-or-nothing: a bad row answers 422 naming the row and the field
(``rows.<index>.<field>``) and nothing of the request is written. Replaying a request is harmless.
One bulk request per tenant at a time: a second one meanwhile gets 409 (with Retry-After).
A request that leaves an audience table stale for the planner analyses it before answering
(services/segmenter/audience/statistics.py).
"""

from __future__ import annotations

from fastapi import APIRouter

from services.segmenter.audience import statistics
from services.segmenter.booking import service
from services.segmenter.booking.schemas import (
    AppointmentsUpsert,
    CustomersUpsert,
    DeleteRequest,
    DeleteResult,
    LocationsUpsert,
    ServicesUpsert,
    StaffUpsert,
    StatusesUpsert,
    StatusOut,
    UpsertResult,
)
from services.segmenter.bulk import ONE_BULK_REQUEST_PER_TENANT
from shared.db import tenant_transaction
from shared.http import Pool, Tenant

router = APIRouter(prefix="/v1/booking", tags=["booking"])


@router.post("/customers:upsert", response_model=UpsertResult, dependencies=[ONE_BULK_REQUEST_PER_TENANT])
async def upsert_customers(body: CustomersUpsert, tenant: Tenant, pool: Pool) -> UpsertResult:
    """Create or replace customers. Phones are normalised to E.164 with the tenant's default region;
    a present but unparseable phone is refused (422 ``rows.<i>.phone``) unless
    ``invalid_phones: "flag"``, which keeps the customer with no usable number and lists it in
    ``flagged`` (audiences count it as "no valid phone"). A missing phone is not an error."""
    # Checked before a connection is taken: a large batch may wait for a bulk worker meanwhile.
    check = await service.check_customers(
        body.rows, region=tenant.default_region, invalid_phones=body.invalid_phones
    )
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        outcome = await service.upsert_customers(
            conn, tenant_id=tenant.tenant_id, rows=body.rows, check=check
        )
    await statistics.STATISTICS.after_write(pool, {"customers": outcome.result.written})
    return outcome.result


@router.post("/appointments:upsert", response_model=UpsertResult, dependencies=[ONE_BULK_REQUEST_PER_TENANT])
async def upsert_appointments(body: AppointmentsUpsert, tenant: Tenant, pool: Pool) -> UpsertResult:
    """Create or replace appointments. ``customer_id``, ``service_id``, ``location_id`` and
    ``staff_id`` are external ids that must exist already (else 422 naming the row and field);
    ``status`` must be built-in or defined with ``/v1/booking/statuses:upsert``."""
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        outcome = await service.upsert_appointments(conn, tenant_id=tenant.tenant_id, rows=body.rows)
    await statistics.STATISTICS.after_write(pool, {"appointments": outcome.result.written})
    return outcome.result


@router.post("/services:upsert", response_model=UpsertResult, dependencies=[ONE_BULK_REQUEST_PER_TENANT])
async def upsert_services(body: ServicesUpsert, tenant: Tenant, pool: Pool) -> UpsertResult:
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        outcome = await service.upsert_services(conn, tenant_id=tenant.tenant_id, rows=body.rows)
    await statistics.STATISTICS.after_write(pool, {"services": outcome.result.written})
    return outcome.result


@router.post("/locations:upsert", response_model=UpsertResult, dependencies=[ONE_BULK_REQUEST_PER_TENANT])
async def upsert_locations(body: LocationsUpsert, tenant: Tenant, pool: Pool) -> UpsertResult:
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        outcome = await service.upsert_locations(conn, tenant_id=tenant.tenant_id, rows=body.rows)
    await statistics.STATISTICS.after_write(pool, {"locations": outcome.result.written})
    return outcome.result


@router.post("/staff:upsert", response_model=UpsertResult, dependencies=[ONE_BULK_REQUEST_PER_TENANT])
async def upsert_staff(body: StaffUpsert, tenant: Tenant, pool: Pool) -> UpsertResult:
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        outcome = await service.upsert_staff(conn, tenant_id=tenant.tenant_id, rows=body.rows)
    return outcome.result


@router.post("/statuses:upsert", response_model=UpsertResult, dependencies=[ONE_BULK_REQUEST_PER_TENANT])
async def upsert_statuses(body: StatusesUpsert, tenant: Tenant, pool: Pool) -> UpsertResult:
    """Define custom statuses, each saying whether it counts as cancelled (as ``canceled`` and
    ``rejected`` do). Built-in names cannot be redefined."""
    async with tenant_transaction(pool, tenant.tenant_id) as conn:
        return await service.upsert_statuses(conn, tenant_id=tenant.tenant_id, statuses=body.statuses)


@router.get("/statuses", response_model=list[StatusOut])
async def list_statuses(tenant: Tenant, pool: Pool) -> list[StatusOut]:
    async with tenant_transaction(pool, tenant.tenant_id, readonly=True) as conn:
        return await service.known_statuses(conn, tenant.tenant_id)


def _delete_route(kind: str, note: str) -> None:
    async def delete(body: DeleteRequest, tenant: Tenant, pool: Pool) -> DeleteResult:
        async with tenant_transaction(pool, tenant.tenant_id) as conn:
            result = await service.delete(
                conn, tenant_id=tenant.tenant_id, kind=kind, external_ids=body.external_ids
            )
        await statistics.STATISTICS.after_write(pool, {kind: result.deleted})
        return result

    delete.__doc__ = f"Delete {kind} by external id; ids not found are listed, not refused. {note}"
    router.add_api_route(
        f"/{kind}:delete",
        delete,
        methods=["POST"],
        response_model=DeleteResult,
        name=f"delete_{kind}",
        dependencies=[ONE_BULK_REQUEST_PER_TENANT],
    )


_delete_route("customers", "Their appointments are deleted with them.")
_delete_route("appointments", "")
_delete_route("services", "Appointments of a deleted service are kept, without a service.")
_delete_route("locations", "Appointments at a deleted location are kept, without a location.")
_delete_route("staff", "Appointments with a deleted staff member are kept, without one.")
