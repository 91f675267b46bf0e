"""The audit log: who did what, when, to which tenant — operator actions, API key changes and
secret re-encryption. Entries are only ever added; the operator API reads them newest first.

Actors are ``operator@<client address>`` (there is one operator credential; the address tells
sessions apart), ``key:<prefix>`` for a tenant acting with one of its keys, and ``command:<name>``
for maintenance commands.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg

from shared.db import AllTenants, OneTenant

INSERT = "INSERT INTO audit_log (actor, action, tenant_id, detail) VALUES ($1, $2, $3, $4::jsonb)"

SELECT = """
SELECT id, at, actor, action, tenant_id, detail FROM audit_log
WHERE ($1::uuid IS NULL OR tenant_id = $1)
  AND ($2::text IS NULL OR action = $2)
  AND ($3::bigint IS NULL OR id < $3)
ORDER BY id DESC
LIMIT $4
"""


async def record(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    actor: str,
    action: str,
    tenant_id: UUID | None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Add an entry. On a connection, in the caller's transaction (which names the tenant); on
    the pool, in a transaction of its own for ``tenant_id`` (an entry of no tenant, such as a
    re-encryption of every tenant's secrets, is written as the cross-tenant role)."""
    args = (actor, action, tenant_id, json.dumps(dict(detail or {}), default=str))
    if not isinstance(conn, asyncpg.Pool):
        await conn.execute(INSERT, *args)
    elif tenant_id is None:
        await AllTenants(conn).execute(INSERT, *args)
    else:
        await OneTenant(conn).execute(tenant_id, INSERT, *args)


async def entries(
    pool: asyncpg.Pool,
    *,
    tenant_id: UUID | None = None,
    action: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    # The operator's audit listing spans tenants (and holds entries of none).
    rows = await AllTenants(pool).fetch(SELECT, tenant_id, action, before_id, limit)
    return [
        {
            "id": row["id"],
            "at": row["at"],
            "actor": row["actor"],
            "action": row["action"],
            "tenant_id": row["tenant_id"],
            "detail": json.loads(row["detail"]),
        }
        for row in rows
    ]


def key_actor(prefix: str) -> str:
    return f"key:{prefix}"
