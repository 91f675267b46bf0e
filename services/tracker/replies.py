"""What a tenant reads of the messages its customers sent back: every reply, a campaign's, a
recipient's — in keyset pages (ids ascending), like the recipient logs.

A reply is attributed when it is stored (``inbound.py``) to the last message the engine sent that
number in the 24 hours before it arrived; a reply after a longer silence belongs to no campaign
and is listed only among the tenant's replies. Every read is scoped to the tenant: another
tenant's campaign or recipient reads as missing.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from services.tracker import queries
from shared.db import OneTenant, tenant_transaction


def reply_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "message_sid": row["message_sid"],
        "phone": row["phone_e164"],
        "body": row["body"],
        "action": row["action"],
        "received_at": row["received_at"],
        "campaign_id": row["campaign_id"],
        "recipient_id": row["recipient_id"],
    }


def _page(rows: list[asyncpg.Record], limit: int) -> dict[str, Any]:
    items = [reply_view(row) for row in rows]
    return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}


async def tenant_replies(
    pool: asyncpg.Pool, *, tenant_id: UUID, phone_e164: str | None, after: int, limit: int
) -> dict[str, Any]:
    rows = await OneTenant(pool).fetch(
        tenant_id, queries.TENANT_REPLIES_PAGE, tenant_id, after, phone_e164, limit
    )
    return _page(rows, limit)


async def campaign_replies(
    pool: asyncpg.Pool, *, tenant_id: UUID, campaign_id: UUID, after: int, limit: int
) -> dict[str, Any]:
    rows = await OneTenant(pool).fetch(
        tenant_id, queries.CAMPAIGN_REPLIES_PAGE, tenant_id, campaign_id, after, limit
    )
    return _page(rows, limit)


async def recipient_replies(
    pool: asyncpg.Pool, *, tenant_id: UUID, campaign_id: UUID, recipient_id: int, after: int, limit: int
) -> dict[str, Any] | None:
    """None when the recipient is not one of the tenant's campaign's."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        if await conn.fetchval(queries.RECIPIENT_EXISTS, recipient_id, campaign_id, tenant_id) is None:
            return None
        rows = await conn.fetch(
            queries.RECIPIENT_REPLIES_PAGE, tenant_id, recipient_id, campaign_id, after, limit
        )
    return _page(rows, limit)
