"""Writing booking data: the one path the bulk API, the broker events and the CSV import share.

Rows are checked first (phones normalised with the tenant's default region, references resolved
to internal ids, statuses known, no external id twice in one batch); then either the whole batch
is refused (``keep_valid=False``: the bulk API and events, nothing written) or the valid rows are
written and the rejected ones returned (``keep_valid=True``: the CSV import).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from services.segmenter.audience.model import BUILTIN_CANCELLED, BUILTIN_STATUSES
from services.segmenter.booking import queries
from services.segmenter.booking.schemas import (
    AppointmentRow,
    CustomerRow,
    DeleteResult,
    InvalidPhones,
    LocationRow,
    Row,
    RowIssue,
    ServiceRow,
    StaffRow,
    StatusOut,
    StatusRow,
    UpsertResult,
)
from services.segmenter.workers import row_work
from shared.http import InputError
from shared.phones import InvalidPhone, to_e164

R = TypeVar("R", bound=Row)


@dataclass
class Outcome:
    result: UpsertResult
    rejected: list[RowIssue] = field(default_factory=list)


class TenantNotFound(LookupError):
    pass


async def tenant_region(conn: asyncpg.Connection, tenant_id: UUID) -> tuple[str, str]:
    """The tenant's default phone region and time zone."""
    row = await conn.fetchrow(queries.TENANT_REGION, tenant_id)
    if row is None:
        raise TenantNotFound(tenant_id)
    return row["default_region"], row["timezone"]


def _duplicates(rows: Sequence[Row]) -> list[RowIssue]:
    first: dict[str, int] = {}
    issues = []
    for index, row in enumerate(rows):
        if row.external_id in first:
            issues.append(
                RowIssue(
                    row=index,
                    field="external_id",
                    message=f"same external id as row {first[row.external_id]}",
                )
            )
        else:
            first[row.external_id] = index
    return issues


def normalise_phones(
    rows: Sequence[CustomerRow], *, region: str, invalid_phones: InvalidPhones
) -> tuple[list[str | None], list[RowIssue], list[RowIssue]]:
    """E.164 of each row's phone (None when absent or unusable), the rejected rows and the flagged."""
    numbers: list[str | None] = []
    rejected: list[RowIssue] = []
    flagged: list[RowIssue] = []
    for index, row in enumerate(rows):
        if not row.phone:
            numbers.append(None)
            continue
        try:
            numbers.append(to_e164(row.phone, region))
        except InvalidPhone as exc:
            numbers.append(None)
            issue = RowIssue(row=index, field="phone", message=str(exc))
            (flagged if invalid_phones == "flag" else rejected).append(issue)
    return numbers, rejected, flagged


@dataclass(frozen=True)
class CustomerCheck:
    """A batch of customers checked: each row's E.164 (None when absent or unusable), the rows
    refused (a bad phone unless flagged, an external id twice) and those kept without a phone."""

    numbers: list[str | None]
    rejected: list[RowIssue]
    flagged: list[RowIssue]


def _check_customers(
    rows: Sequence[CustomerRow], region: str, invalid_phones: InvalidPhones
) -> CustomerCheck:
    numbers, rejected, flagged = normalise_phones(rows, region=region, invalid_phones=invalid_phones)
    return CustomerCheck(numbers, rejected + _duplicates(rows), flagged)


async def check_customers(
    rows: Sequence[CustomerRow], *, region: str, invalid_phones: InvalidPhones = "reject"
) -> CustomerCheck:
    """Check customers before writing them. No I/O, so a caller can run it before it takes a
    database connection; a large batch is checked in the bulk workers."""
    return await row_work(len(rows), _check_customers, rows, region, invalid_phones)


def _refuse(rejected: list[RowIssue]) -> None:
    if rejected:
        raise InputError(
            [
                {"field": f"rows.{issue.row}.{issue.field}", "message": issue.message, "row": issue.row}
                for issue in sorted(rejected, key=lambda issue: issue.row)
            ]
        )


def _keep(rows: Sequence[R], rejected: list[RowIssue], keep_valid: bool) -> list[int]:
    """Indices of the rows to write; raises InputError when the batch is all-or-nothing."""
    if not keep_valid:
        _refuse(rejected)
    bad = {issue.row for issue in rejected}
    return [index for index in range(len(rows)) if index not in bad]


def _counted(records: list[asyncpg.Record]) -> UpsertResult:
    inserted = sum(1 for record in records if record["inserted"])
    return UpsertResult(inserted=inserted, updated=len(records) - inserted)


async def upsert_customers(
    conn: asyncpg.Connection,
    *,
    tenant_id: UUID,
    rows: Sequence[CustomerRow],
    check: CustomerCheck,
    keep_valid: bool = False,
) -> Outcome:
    """Write the customers ``check`` (of these rows, from check_customers) let through."""
    numbers, rejected = check.numbers, check.rejected
    keep = _keep(rows, rejected, keep_valid)
    records = await conn.fetch(
        queries.UPSERT_CUSTOMERS,
        tenant_id,
        [rows[i].external_id for i in keep],
        [rows[i].first_name for i in keep],
        [rows[i].last_name for i in keep],
        [rows[i].email for i in keep],
        [rows[i].phone for i in keep],
        [numbers[i] for i in keep],
    )
    result = _counted(records)
    result.flagged = check.flagged
    return Outcome(result=result, rejected=rejected)


async def _ids(
    conn: asyncpg.Connection, sql: str, tenant_id: UUID, wanted: set[str | None]
) -> dict[str, int]:
    values = sorted(value for value in wanted if value)
    if not values:
        return {}
    return {record["external_id"]: record["id"] for record in await conn.fetch(sql, tenant_id, values)}


async def known_statuses(conn: asyncpg.Connection, tenant_id: UUID) -> list[StatusOut]:
    custom = await conn.fetch(queries.CUSTOM_STATUSES, tenant_id)
    return [
        StatusOut(name=name, counts_as_cancelled=name in BUILTIN_CANCELLED, built_in=True)
        for name in BUILTIN_STATUSES
    ] + [
        StatusOut(name=row["name"], counts_as_cancelled=row["counts_as_cancelled"], built_in=False)
        for row in custom
    ]


async def upsert_appointments(
    conn: asyncpg.Connection,
    *,
    tenant_id: UUID,
    rows: Sequence[AppointmentRow],
    keep_valid: bool = False,
    now: datetime | None = None,
) -> Outcome:
    customers = await _ids(conn, queries.CUSTOMER_IDS, tenant_id, {row.customer_id for row in rows})
    services = await _ids(conn, queries.SERVICE_IDS, tenant_id, {row.service_id for row in rows})
    locations = await _ids(conn, queries.LOCATION_IDS, tenant_id, {row.location_id for row in rows})
    staff = await _ids(conn, queries.STAFF_IDS, tenant_id, {row.staff_id for row in rows})
    statuses = {status.name for status in await known_statuses(conn, tenant_id)}
    rejected = _duplicates(rows)
    references: tuple[tuple[str, str, dict[str, int]], ...] = (
        ("customer_id", "customer", customers),
        ("service_id", "service", services),
        ("location_id", "location", locations),
        ("staff_id", "staff member", staff),
    )
    for index, row in enumerate(rows):
        for attribute, what, known in references:
            value = getattr(row, attribute)
            if value is not None and value not in known:
                rejected.append(RowIssue(row=index, field=attribute, message=f"unknown {what} {value!r}"))
        if row.status not in statuses:
            rejected.append(RowIssue(row=index, field="status", message=f"unknown status {row.status!r}"))
    keep = _keep(rows, rejected, keep_valid)
    written_at = now or datetime.now(UTC)
    kept = [rows[i] for i in keep]
    records = await conn.fetch(
        queries.UPSERT_APPOINTMENTS,
        tenant_id,
        [row.external_id for row in kept],
        [customers[row.customer_id] for row in kept],
        [services.get(row.service_id) if row.service_id else None for row in kept],
        [locations.get(row.location_id) if row.location_id else None for row in kept],
        [staff.get(row.staff_id) if row.staff_id else None for row in kept],
        [row.starts_at for row in kept],
        [row.ends_at for row in kept],
        [row.created_at for row in kept],
        [row.status for row in kept],
        [row.status_changed_at for row in kept],
        [row.updated_at or written_at for row in kept],
        [row.external_id for row in kept if row.status_changed_at is not None],
    )
    return Outcome(result=_counted(records), rejected=rejected)


async def _upsert_named(
    conn: asyncpg.Connection, sql: str, tenant_id: UUID, rows: Sequence[R], keep_valid: bool, *columns: str
) -> Outcome:
    rejected = _duplicates(rows)
    keep = _keep(rows, rejected, keep_valid)
    arrays: list[Any] = [[getattr(rows[i], column) for i in keep] for column in ("external_id", *columns)]
    return Outcome(result=_counted(await conn.fetch(sql, tenant_id, *arrays)), rejected=rejected)


async def upsert_services(
    conn: asyncpg.Connection, *, tenant_id: UUID, rows: Sequence[ServiceRow], keep_valid: bool = False
) -> Outcome:
    return await _upsert_named(conn, queries.UPSERT_SERVICES, tenant_id, rows, keep_valid, "name")


async def upsert_staff(
    conn: asyncpg.Connection, *, tenant_id: UUID, rows: Sequence[StaffRow], keep_valid: bool = False
) -> Outcome:
    return await _upsert_named(conn, queries.UPSERT_STAFF, tenant_id, rows, keep_valid, "name")


async def upsert_locations(
    conn: asyncpg.Connection, *, tenant_id: UUID, rows: Sequence[LocationRow], keep_valid: bool = False
) -> Outcome:
    return await _upsert_named(conn, queries.UPSERT_LOCATIONS, tenant_id, rows, keep_valid, "name", "address")


async def upsert_statuses(
    conn: asyncpg.Connection, *, tenant_id: UUID, statuses: Sequence[StatusRow]
) -> UpsertResult:
    errors = [
        {"field": f"statuses.{index}.name", "message": f"{status.name!r} is a built-in status"}
        for index, status in enumerate(statuses)
        if status.name in BUILTIN_STATUSES
    ]
    names = [status.name for status in statuses]
    errors += [
        {"field": f"statuses.{index}.name", "message": "listed twice"}
        for index, name in enumerate(names)
        if name in names[:index]
    ]
    if errors:
        raise InputError(errors)
    records = await conn.fetch(
        queries.UPSERT_STATUSES, tenant_id, names, [status.counts_as_cancelled for status in statuses]
    )
    return _counted(records)


DELETES = {
    "customers": queries.DELETE_CUSTOMERS,
    "appointments": queries.DELETE_APPOINTMENTS,
    "services": queries.DELETE_SERVICES,
    "locations": queries.DELETE_LOCATIONS,
    "staff": queries.DELETE_STAFF,
}


async def delete(
    conn: asyncpg.Connection, *, tenant_id: UUID, kind: str, external_ids: Sequence[str]
) -> DeleteResult:
    """Delete by external id; ids already gone are reported, not refused, so a replay is harmless.

    Deleting a customer deletes their appointments; deleting a service, location or staff member
    keeps the appointments without it.
    """
    deleted = {
        record["external_id"] for record in await conn.fetch(DELETES[kind], tenant_id, list(external_ids))
    }
    return DeleteResult(
        deleted=len(deleted), not_found=sorted({value for value in external_ids if value not in deleted})
    )
