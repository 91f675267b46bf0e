"""Importing booking data from CSV: rows checked one by one, valid rows kept, rejected rows listed
with their line number and reason. The file is read and written in batches, so memory stays flat.

Columns are the bulk API's field names (``external_id``, ``first_name``, ``phone``, …); an empty
cell means "not given". Times without an offset are read in the tenant's time zone. Phones that
cannot be parsed are kept and flagged (the customer gets no usable number). Import services and
locations before the appointments that refer to them, and customers before their appointments.
A batch that leaves an audience table stale for the planner has it analysed before the import
goes on (services/segmenter/audience/statistics.py), so a preview right after it is fast.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import BaseModel, ValidationError

from services.segmenter.audience import statistics
from services.segmenter.booking import service
from services.segmenter.booking.schemas import (
    AppointmentRow,
    CustomerRow,
    LocationRow,
    RowIssue,
    ServiceRow,
    StaffRow,
)
from shared.db import tenant_transaction

Kind = Literal["customers", "appointments", "services", "locations", "staff"]

MODELS: dict[str, type[BaseModel]] = {
    "customers": CustomerRow,
    "appointments": AppointmentRow,
    "services": ServiceRow,
    "locations": LocationRow,
    "staff": StaffRow,
}
TIME_COLUMNS = {"starts_at", "ends_at", "created_at", "status_changed_at", "updated_at"}


class BadFile(ValueError):
    """The file as a whole cannot be imported (unknown or missing columns)."""


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    flagged: list[RowIssue] = field(default_factory=list)
    rejected: list[RowIssue] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.inserted + self.updated


def check_header(kind: str, header: list[str] | None) -> None:
    model = MODELS[kind]
    if not header:
        raise BadFile("the file is empty")
    unknown = [name for name in header if name not in model.model_fields]
    if unknown:
        raise BadFile(f"unknown columns for {kind}: {', '.join(unknown)}")
    missing = [name for name, info in model.model_fields.items() if info.is_required() and name not in header]
    if missing:
        raise BadFile(f"missing columns for {kind}: {', '.join(missing)}")


def _cell(name: str, value: str, zone: ZoneInfo) -> Any:
    if name in TIME_COLUMNS:
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            return value  # the model names the problem
        return instant if instant.tzinfo else instant.replace(tzinfo=zone)
    return value


def parse_row(kind: str, line: int, cells: dict[str, str], zone: ZoneInfo) -> BaseModel | list[RowIssue]:
    values = {name: _cell(name, value, zone) for name, value in cells.items() if value not in ("", None)}
    try:
        return MODELS[kind].model_validate(values)
    except ValidationError as exc:
        return [
            RowIssue(
                row=line, field=".".join(str(part) for part in error["loc"]) or "row", message=error["msg"]
            )
            for error in exc.errors()
        ]


def numbered_rows(kind: str, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, cells) of each data row; a row with too many cells is reported by the caller."""
    reader = csv.DictReader(lines, restkey="__extra__")
    check_header(kind, list(reader.fieldnames or []))
    for cells in reader:
        yield reader.line_num, cells


async def _write(
    conn: asyncpg.Connection, kind: str, tenant_id: UUID, region: str, rows: list[Any]
) -> service.Outcome:
    if kind == "customers":
        check = await service.check_customers(rows, region=region, invalid_phones="flag")
        return await service.upsert_customers(
            conn, tenant_id=tenant_id, rows=rows, check=check, keep_valid=True
        )
    if kind == "appointments":
        return await service.upsert_appointments(conn, tenant_id=tenant_id, rows=rows, keep_valid=True)
    if kind == "services":
        return await service.upsert_services(conn, tenant_id=tenant_id, rows=rows, keep_valid=True)
    if kind == "locations":
        return await service.upsert_locations(conn, tenant_id=tenant_id, rows=rows, keep_valid=True)
    return await service.upsert_staff(conn, tenant_id=tenant_id, rows=rows, keep_valid=True)


async def import_rows(
    pool: asyncpg.Pool,
    *,
    tenant_id: UUID,
    kind: Kind,
    lines: Iterable[str],
    batch_size: int = 5_000,
    on_batch: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import ``lines`` (a CSV with a header) of ``kind``; raises BadFile for an unusable header."""
    async with pool.acquire() as conn:
        region, tz = await service.tenant_region(conn, tenant_id)
    zone = ZoneInfo(tz)
    report = ImportReport()
    batch: list[BaseModel] = []
    batch_lines: list[int] = []

    async def flush() -> None:
        if not batch:
            return
        async with tenant_transaction(pool, tenant_id) as conn:
            outcome = await _write(conn, kind, tenant_id, region, batch)
        await statistics.STATISTICS.after_write(pool, {kind: outcome.result.written})

        def remap(issue: RowIssue) -> RowIssue:
            return RowIssue(row=batch_lines[issue.row], field=issue.field, message=issue.message)

        report.inserted += outcome.result.inserted
        report.updated += outcome.result.updated
        report.flagged += [remap(issue) for issue in outcome.result.flagged]
        report.rejected += [remap(issue) for issue in outcome.rejected]
        batch.clear()
        batch_lines.clear()
        if on_batch is not None:
            on_batch(report)

    for line, cells in numbered_rows(kind, lines):
        if "__extra__" in cells:
            report.rejected.append(RowIssue(row=line, field="row", message="more cells than columns"))
            continue
        parsed = parse_row(kind, line, cells, zone)
        if isinstance(parsed, list):
            report.rejected += parsed
            continue
        batch.append(parsed)
        batch_lines.append(line)
        if len(batch) >= batch_size:
            await flush()
    await flush()
    report.rejected.sort(key=lambda issue: issue.row)
    return report
