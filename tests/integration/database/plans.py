"""What the plan tests share: a bare tenant row, a transaction as a service's role, and the rows a
plan read (from ``EXPLAIN (ANALYZE, FORMAT JSON)`` or ``auto_explain``'s JSON)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


async def insert_tenant(conn: asyncpg.Connection, name: str = "t") -> uuid.UUID:
    tenant_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from)"
        " VALUES ($1, $2, $3, 'x', '+14155238886')",
        tenant_id,
        name,
        "AC" + uuid.uuid4().hex,
    )
    return tenant_id


@asynccontextmanager
async def as_role(
    conn: asyncpg.Connection, role: str, tenant_id: uuid.UUID | None = None, *, commit: bool = False
) -> AsyncIterator[None]:
    """A transaction as ``role`` (for ``tenant_id``, under row-level security), rolled back
    unless ``commit``."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(f"SET LOCAL ROLE {role}")
        if tenant_id is not None:
            await conn.execute("SELECT set_config('wce.tenant_id', $1, true)", str(tenant_id))
        yield
    except BaseException:
        await transaction.rollback()
        raise
    if commit:
        await transaction.commit()
    else:
        await transaction.rollback()


def rows_read(node: dict[str, Any], tables: Collection[str], *, repeated_only: bool = False) -> float:
    """Rows of ``tables`` a plan node and those below it read (produced or filtered out), and pairs
    of rows its joins tried and filtered out, over all their loops. With ``repeated_only``, scans
    count only where they run more than once (a scan inside a loop over a batch: a walk per row
    shows there, where one pass over a table the planner rightly finds small does not)."""
    loops = node.get("Actual Loops", 1)
    scanned = 0
    if node.get("Relation Name") in tables and (loops > 1 or not repeated_only):
        scanned = (
            node.get("Actual Rows", 0)
            + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0)
        )
    # Rows a join filtered out are pairs tried: the work of a loop wherever the join stands.
    own = scanned + node.get("Rows Removed by Join Filter", 0)
    return own * loops + sum(
        rows_read(child, tables, repeated_only=repeated_only) for child in node.get("Plans", [])
    )
