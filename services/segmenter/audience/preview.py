"""Audience preview: how many recipients, how many customers were left out and why, and a sample.

Its counts and its sample come from the very definition of the members and recipients the snapshot
uses (``query.py``), so with unchanged data the preview's total equals the number of recipients a
campaign started at the same clock gets.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from services.segmenter import queries
from services.segmenter.audience import statistics
from services.segmenter.audience.model import Audience
from services.segmenter.audience.query import (
    frequency_capped_query,
    preview_counts_query,
    preview_sample_query,
    validate_audience,
)
from services.segmenter.audience.windows import segment_window
from services.segmenter.schemas import BodyTemplate, ContentTemplate
from services.segmenter.template_check import TemplateCheck, check_template
from shared.db import tenant_transaction
from shared.http import InputError
from shared.phones import mask
from shared.templating import parse_template, validate_template

SAMPLE_SIZE = 20


class PreviewRequest(Audience):
    as_of: AwareDatetime | None = Field(
        default=None,
        description="The clock the windows use (ISO 8601 with an offset); default: now.",
    )
    template: BodyTemplate | ContentTemplate | None = Field(
        default=None,
        description=(
            "A campaign template to check against the audience: the preview then counts the"
            " recipients it would render empty or past WhatsApp's limits for (never sent)."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _template_kind(cls, data: Any) -> Any:
        # As for a campaign: the template's keys choose its model, so errors name the right fields.
        if isinstance(data, dict) and isinstance(data.get("template"), dict):
            template = data["template"]
            if "content_sid" in template and "body" in template:
                raise ValueError("template: give either body or content_sid, not both")
        return data

    def audience(self) -> Audience:
        return Audience.model_validate(self.model_dump(exclude={"as_of", "template"}))


class Excluded(BaseModel):
    suppressed: int = Field(description="Customers whose number is on the suppression list.")
    no_valid_phone: int = Field(description="Customers without a phone that parses as a valid number.")
    duplicate_phone: int = Field(description="Customers whose number another chosen customer already has.")
    frequency_capped: int = Field(
        description=(
            "Recipients (counted in `total`) whose number already had the tenant's frequency cap of"
            " marketing messages in its window: sent now, they end `skipped` with reason"
            " `frequency_capped`. 0 without a cap."
        )
    )


class SampleRecipient(BaseModel):
    name: str
    phone: str = Field(description="Masked E.164 number.")
    reason: str = Field(description="Why the customer is in the audience.")
    appointment_count: int = Field(description="Matching appointments.")
    last_appointment_at: datetime | None
    appointment_id: str | None = Field(description="External id of the appointment the messages refer to.")
    appointment_starts_at: datetime | None = Field(
        default=None, description="When the appointment the messages refer to starts."
    )
    service_name: str | None = Field(default=None, description="That appointment's service, if any.")
    location_name: str | None = Field(default=None, description="That appointment's location, if any.")
    location_address: str | None = Field(default=None, description="That location's address, when known.")
    staff_name: str | None = Field(default=None, description="That appointment's staff member, if any.")


class WindowOut(BaseModel):
    start: datetime
    end: datetime


class PreviewOut(BaseModel):
    total: int = Field(description="Recipients: one per valid, not suppressed number.")
    sendable: int = Field(
        description="Recipients that would get a message now: `total` less those frequency-capped."
    )
    matched_customers: int = Field(description="Customers the segment and filters select.")
    excluded: Excluded
    sample: list[SampleRecipient]
    as_of: datetime
    window: WindowOut | None
    provides_appointment: bool
    template_check: TemplateCheck | None = Field(
        default=None,
        description=(
            "With a template that can render empty or past WhatsApp's limits: how many recipients"
            " it would, and why (they would fail without being sent)."
        ),
    )


def _local(instant: datetime | None, zone: ZoneInfo) -> str:
    return "-" if instant is None else instant.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def match_reason(audience: Audience, row: dict[str, Any], tz: str) -> str:
    """The one-line explanation the preview shows next to a sampled customer."""
    zone = ZoneInfo(tz)
    n, last, hit = row["n"], row["last_starts_at"], row["hit_at"]
    segment = audience.segment
    if segment == "recent_bookers":
        return f"booked {_local(hit, zone)}"
    if segment == "upcoming":
        return f"next appointment {_local(hit, zone)}"
    if segment == "cancelled_recent":
        return f"cancelled {_local(hit, zone)}"
    if segment == "lapsed":
        return f"last appointment {_local(last, zone)}"
    if segment in ("first_time", "repeat", "all_appointments"):
        plural = "appointment" if n == 1 else "appointments"
        return f"{n} {plural}, last {_local(last, zone)}"
    if n:
        return f"customer with {n} matching appointments"
    return "customer"


async def preview_audience(
    pool: asyncpg.Pool,
    *,
    tenant_id: UUID,
    tz: str,
    audience: Audience,
    as_of: datetime | None,
    template: dict[str, Any] | None = None,
) -> PreviewOut:
    now = as_of or datetime.now(UTC)
    if template is not None:
        errors = validate_template(template, appointment_available=audience.provides_appointment)
        if errors:
            raise InputError(errors)
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        await validate_audience(conn, tenant_id=tenant_id, audience=audience, field_prefix="")
    # Planned on statistics from before a bulk load, these queries can take seconds instead of
    # milliseconds: stale tables are analysed first (statistics.py).
    await statistics.STATISTICS.before_read(pool)
    counts_sql, counts_params = preview_counts_query(audience, tenant_id=tenant_id, now=now, tz=tz)
    sample_sql, sample_params = preview_sample_query(
        audience, tenant_id=tenant_id, now=now, tz=tz, limit=SAMPLE_SIZE
    )
    cap = await pool.fetchrow(queries.TENANT_FREQUENCY_CAP, tenant_id)
    fetches = [
        _fetch(pool, tenant_id, counts_sql, counts_params),
        _fetch(pool, tenant_id, sample_sql, sample_params),
    ]
    if cap is not None and cap["messages"] is not None:
        capped_sql, capped_params = frequency_capped_query(
            audience, tenant_id=tenant_id, now=now, tz=tz, messages=cap["messages"], days=cap["days"]
        )
        fetches.append(_fetch(pool, tenant_id, capped_sql, capped_params))
    check_task = asyncio.ensure_future(
        _check(pool, tenant_id=tenant_id, tz=tz, audience=audience, template=template, now=now)
    )
    counts, sample, *capped_rows = await asyncio.gather(*fetches)
    check = await check_task
    capped = capped_rows[0][0]["capped"] if capped_rows else 0
    total = counts[0]
    window = segment_window(audience, now=now, tz=tz)
    return PreviewOut(
        total=total["recipients"],
        sendable=total["recipients"] - capped,
        matched_customers=total["matched"],
        excluded=Excluded(
            suppressed=total["suppressed"],
            no_valid_phone=total["no_valid_phone"],
            duplicate_phone=total["eligible"] - total["recipients"],
            frequency_capped=capped,
        ),
        sample=[
            SampleRecipient(
                name=f"{row['first_name']} {row['last_name']}".strip(),
                phone=mask(row["phone_e164"]),
                reason=match_reason(audience, dict(row), tz),
                appointment_count=row["n"],
                last_appointment_at=row["last_starts_at"],
                appointment_id=row["appointment_external_id"],
                appointment_starts_at=row["appointment_starts_at"],
                service_name=row["service_name"],
                location_name=row["location_name"],
                location_address=row["location_address"],
                staff_name=row["staff_name"],
            )
            for row in sample
        ],
        as_of=now,
        window=WindowOut(start=window.start, end=window.end) if window else None,
        provides_appointment=audience.provides_appointment,
        template_check=check,
    )


async def _check(
    pool: asyncpg.Pool,
    *,
    tenant_id: UUID,
    tz: str,
    audience: Audience,
    template: dict[str, Any] | None,
    now: datetime,
) -> TemplateCheck | None:
    if template is None:
        return None
    return await check_template(
        pool, tenant_id=tenant_id, tz=tz, audience=audience, template=parse_template(template), now=now
    )


async def _fetch(pool: asyncpg.Pool, tenant_id: UUID, sql: str, params: list[Any]) -> list[asyncpg.Record]:
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        # Compiling these scans costs more than running them; parallel workers would each rebuild
        # the same hash of the members; the members' hash fits in memory. Every plan is made for
        # the statement's own values: a generic plan, blind to how many customers a window or a
        # filter selects, can pick a nested loop over hundreds of thousands of them.
        await conn.execute(
            "SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0;"
            " SET LOCAL work_mem = '64MB'; SET LOCAL plan_cache_mode = force_custom_plan"
        )
        rows: list[asyncpg.Record] = await conn.fetch(sql, *params)
        return rows
