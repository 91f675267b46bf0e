"""The SQL that selects an audience's recipients: one row per E.164 number."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.segmenter.audience.model import Audience


def recipients_query(
    audience: Audience,
    *,
    tenant_id: UUID,
    now: datetime,
    tz: str,
    phone_after: str | None = None,
    phone_upto: str | None = None,
) -> tuple[str, list[Any]]:
    """SELECT customer_id, appointment_id, phone_e164 — one row per phone in (phone_after, phone_upto]."""
    sql = """
        SELECT DISTINCT ON (c.phone_e164) c.id AS customer_id, NULL::bigint AS appointment_id, c.phone_e164
        FROM customers c
        WHERE c.tenant_id = $1 AND c.phone_e164 IS NOT NULL
          AND ($3::text IS NULL OR c.phone_e164 > $3) AND ($4::text IS NULL OR c.phone_e164 <= $4)
          AND (NOT $2 OR NOT EXISTS (
                SELECT 1 FROM suppressions s WHERE s.tenant_id = c.tenant_id AND s.phone_e164 = c.phone_e164))
        ORDER BY c.phone_e164, c.id DESC
    """
    return sql, [tenant_id, audience.exclude_suppressed, phone_after, phone_upto]


async def validate_audience(conn: asyncpg.Connection, *, tenant_id: UUID, audience: Audience) -> None:
    """Raise InputError for references the tenant does not have (``all_customers`` has none)."""
