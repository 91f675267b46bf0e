"""A tenant's API keys: several, named, each with its creation, last use and optional expiry;
created and revoked by the tenant itself or the operator, and rotated with an overlap window in
which the old key still works. Every change is written to the audit log in its transaction."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from services.segmenter import queries
from shared import audit
from shared.apikeys import display_prefix, hash_api_key, new_api_key
from shared.db import OneTenant, tenant_transaction

# Keys a tenant may hold at once: one per integration is the use, and the table is shared.
MAX_ACTIVE_KEYS = 20


class TenantNotFound(LookupError):
    pass


class KeyNotFound(LookupError):
    pass


class TooManyKeys(ValueError):
    pass


async def list_keys(
    pool: asyncpg.Pool, tenant_id: UUID, *, include_inactive: bool = False
) -> list[asyncpg.Record]:
    return list(await OneTenant(pool).fetch(tenant_id, queries.SELECT_API_KEYS, tenant_id, include_inactive))


async def _insert(
    conn: asyncpg.Connection, tenant_id: UUID, name: str, expires_at: datetime | None
) -> tuple[asyncpg.Record, str]:
    api_key = new_api_key()
    row = await conn.fetchrow(
        queries.INSERT_NAMED_API_KEY,
        tenant_id,
        hash_api_key(api_key),
        display_prefix(api_key),
        name,
        expires_at,
    )
    return row, api_key


async def _lock_tenant(conn: asyncpg.Connection, tenant_id: UUID) -> None:
    # Serialises key changes of one tenant, so the active-key count cannot be raced past.
    if await conn.fetchval("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant_id) is None:
        raise TenantNotFound(tenant_id)


async def _room_for_one_more(conn: asyncpg.Connection, tenant_id: UUID, *, replacing: set[int]) -> None:
    """TooManyKeys unless a new key keeps the tenant within MAX_ACTIVE_KEYS. Keys still in a
    rotation's overlap count, except the ones this change replaces: rotating again and again with
    an overlap must not pile up working keys."""
    active = await conn.fetch(queries.SELECT_API_KEYS, tenant_id, False)
    if sum(row["id"] not in replacing for row in active) >= MAX_ACTIVE_KEYS:
        raise TooManyKeys(f"a tenant holds at most {MAX_ACTIVE_KEYS} active keys; revoke one first")


async def create_key(
    pool: asyncpg.Pool, tenant_id: UUID, *, name: str, expires_at: datetime | None, actor: str
) -> tuple[asyncpg.Record, str]:
    async with tenant_transaction(pool, tenant_id) as conn:
        await _lock_tenant(conn, tenant_id)
        await _room_for_one_more(conn, tenant_id, replacing=set())
        row, api_key = await _insert(conn, tenant_id, name, expires_at)
        await audit.record(
            conn,
            actor=actor,
            action="api_key.created",
            tenant_id=tenant_id,
            detail={"key_id": row["id"], "name": name, "prefix": row["prefix"], "expires_at": expires_at},
        )
    return row, api_key


async def revoke_key(pool: asyncpg.Pool, tenant_id: UUID, key_id: int, *, actor: str) -> asyncpg.Record:
    async with tenant_transaction(pool, tenant_id) as conn:
        row = await conn.fetchrow(queries.REVOKE_API_KEY, tenant_id, key_id)
        if row is None:
            raise KeyNotFound(key_id)
        await audit.record(
            conn,
            actor=actor,
            action="api_key.revoked",
            tenant_id=tenant_id,
            detail={"key_id": key_id, "name": row["name"], "prefix": row["prefix"]},
        )
    return row


async def rotate(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    *,
    key_id: int | None,
    name: str | None,
    overlap_s: int,
    actor: str,
) -> tuple[asyncpg.Record, str, list[asyncpg.Record]]:
    """Issue a new key replacing ``key_id`` (or every active key); the replaced keys expire after
    ``overlap_s`` (0: at once). The new key keeps the replaced key's name unless one is given.
    TooManyKeys when the tenant's other active keys already fill the bound."""
    async with tenant_transaction(pool, tenant_id) as conn:
        await _lock_tenant(conn, tenant_id)
        replaced = list(await conn.fetch(queries.EXPIRE_API_KEYS, tenant_id, key_id, float(overlap_s)))
        if key_id is not None and not replaced:
            raise KeyNotFound(key_id)
        await _room_for_one_more(conn, tenant_id, replacing={old["id"] for old in replaced})
        new_name = name or (replaced[0]["name"] if key_id is not None else "default")
        row, api_key = await _insert(conn, tenant_id, new_name, None)
        await audit.record(
            conn,
            actor=actor,
            action="api_key.rotated",
            tenant_id=tenant_id,
            detail={
                "key_id": row["id"],
                "name": new_name,
                "prefix": row["prefix"],
                "replaced": [old["id"] for old in replaced],
                "overlap_s": overlap_s,
            },
        )
    return row, api_key, replaced
