"""What a tenant reads about its campaigns: recipient logs (paged or as CSV, with each recipient's
replies counted), progress (with the campaign's replies), events.

Every read is scoped to the tenant; a campaign of another tenant reads as missing. The CSV
export reads a few thousand rows at a time in id order (each page's names and reply counts
looked up by key) and yields each page before reading the next, so its memory stays flat however
large the campaign, and its cost stays linear whatever the planner believes of a campaign it has
no statistics for yet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.tracker import queries
from services.tracker.csvfmt import BOM, COLUMNS, recipient_view, row_cells
from services.tracker.progress import RATE_WINDOW_S, Progress, Timing, build_progress
from shared.clock import Clock
from shared.db import OneTenant, tenant_transaction
from shared.pacing import Pacing, effective_rate
from shared.sending_window import SendingWindow
from shared.settings import get_settings

CSV_CHUNK_ROWS = 2000


@dataclass(frozen=True)
class RecipientFilters:
    states: list[str] | None = None
    error_code: int | None = None
    phone_e164: str | None = None

    def given(self) -> dict[str, Any]:
        """The filters set, by their name in queries.RECIPIENT_FILTERS. One state is an equality:
        the planner keeps an index's id order under `state = x`, not under `state = ANY(…)`."""
        values: dict[str, Any] = {"error_code": self.error_code, "phone_e164": self.phone_e164}
        if self.states is not None and len(self.states) == 1:
            values["state"] = self.states[0]
        else:
            values["states"] = self.states
        return {name: value for name, value in values.items() if value is not None}


async def campaign_exists(pool: asyncpg.Pool, *, tenant_id: UUID, campaign_id: UUID) -> bool:
    return await OneTenant(pool).fetchrow(tenant_id, queries.CAMPAIGN, campaign_id, tenant_id) is not None


async def recipients_page(
    pool: asyncpg.Pool,
    *,
    tenant_id: UUID,
    campaign_id: UUID,
    filters: RecipientFilters,
    after: int,
    limit: int,
) -> dict[str, Any]:
    given = filters.given()
    rows = await OneTenant(pool).fetch(
        tenant_id,
        queries.recipient_rows(list(given)),
        tenant_id,
        campaign_id,
        after,
        *given.values(),
        limit,
    )
    items = [recipient_view(row) for row in rows]
    next_after = items[-1]["id"] if len(items) == limit else None
    return {"items": items, "next_after": next_after}


async def recipients_csv(
    pool: asyncpg.Pool,
    *,
    tenant_id: UUID,
    campaign_id: UUID,
    filters: RecipientFilters,
    bom: bool,
    chunk_rows: int = CSV_CHUNK_ROWS,
) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if bom:
        buffer.write(BOM)
    writer.writerow(COLUMNS)
    given = filters.given()
    sql = queries.export_recipients(list(given))
    after = 0
    while True:
        async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
            rows = await conn.fetch(sql, tenant_id, campaign_id, after, *given.values(), chunk_rows)
            customer_ids = sorted({row["customer_id"] for row in rows if row["customer_id"] is not None})
            names = {
                name["id"]: name for name in await conn.fetch(queries.CUSTOMER_NAMES, tenant_id, customer_ids)
            }
            replies: dict[int, int] = dict(
                await conn.fetch(
                    queries.REPLIES_BY_RECIPIENT, tenant_id, campaign_id, [row["id"] for row in rows]
                )
            )
        for row in rows:
            name = names.get(row["customer_id"])
            writer.writerow(
                row_cells(
                    {
                        **row,
                        "first_name": name["first_name"] if name else None,
                        "last_name": name["last_name"] if name else None,
                        "replies": replies.get(row["id"], 0),
                    }
                )
            )
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < chunk_rows:
            return
        after = rows[-1]["id"]


async def load_progress(
    pool: asyncpg.Pool, *, tenant_id: UUID, campaign_id: UUID, clock: Clock | None = None
) -> Progress | None:
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        campaign = await conn.fetchrow(queries.CAMPAIGN_PROGRESS, campaign_id, tenant_id)
        if campaign is None:
            return None
        counts = await conn.fetch(queries.STATE_COUNTS, tenant_id, campaign_id)
        sent = await conn.fetchval(queries.SENT_IN_WINDOW, tenant_id, campaign_id, RATE_WINDOW_S)
        replies = await conn.fetchrow(queries.REPLY_COUNTS, tenant_id, campaign_id)
    return build_progress(
        campaign_id=str(campaign_id),
        state=campaign["state"],
        pause_reason=campaign["pause_reason"],
        counts={row["state"]: row["n"] for row in counts},
        sent_in_window=sent or 0,
        configured_rate_per_s=campaign["rate_per_second"],
        effective_rate_per_s=_effective_rate(campaign),
        timing=Timing(
            now=(clock or Clock()).now(),
            timezone=campaign["timezone"],
            window=None
            if campaign["sending_window"] is None
            else SendingWindow.from_json(campaign["sending_window"]),
            hold_reason=campaign["campaign_hold_reason"],
            hold_until=campaign["campaign_hold_until"],
            scheduled_at=campaign["scheduled_at"],
        ),
        replies=replies["replies"],
        replied=replies["replied"],
    )


def _effective_rate(campaign: asyncpg.Record) -> float | None:
    """The tenant's rate in force now, after Twilio's refusals (None: an unlimited tenant)."""
    configured = campaign["rate_per_second"]
    if configured is None:
        return None
    pacing = (
        Pacing(campaign["factor"], campaign["changed_at"], campaign["hold_until"])
        if campaign["factor"] is not None
        else None
    )
    return effective_rate(configured, pacing, datetime.now(UTC), get_settings().pacing_recovery_per_s)


def _event(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "recipient_id": row["recipient_id"],
        "from_state": row["from_state"],
        "to_state": row["to_state"],
        "source": row["source"],
        "error_code": row["error_code"],
        "detail": row["detail"],
        "at": row["at"],
    }


async def campaign_events(
    pool: asyncpg.Pool, *, tenant_id: UUID, campaign_id: UUID, after: int, limit: int
) -> dict[str, Any]:
    rows = await OneTenant(pool).fetch(
        tenant_id, queries.CAMPAIGN_EVENTS_PAGE, tenant_id, campaign_id, after, limit
    )
    items = [_event(row) for row in rows]
    return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}


async def recipient_events(
    pool: asyncpg.Pool, *, tenant_id: UUID, campaign_id: UUID, recipient_id: int
) -> list[dict[str, Any]] | None:
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        if await conn.fetchval(queries.RECIPIENT_EXISTS, recipient_id, campaign_id, tenant_id) is None:
            return None
        rows = await conn.fetch(queries.RECIPIENT_EVENTS, tenant_id, recipient_id, campaign_id)
    return [_event(row) for row in rows]
