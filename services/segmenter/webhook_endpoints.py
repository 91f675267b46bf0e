"""A tenant's outbound webhook endpoints and deliveries: registration (the signing secret is
made here, stored encrypted and shown once), changes, removal, the delivery log and resends.
Endpoint changes are written to the audit log in their transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from services.segmenter import webhook_queries as queries
from shared import audit
from shared.crypto import SecretBox
from shared.db import OneTenant, tenant_transaction
from shared.webhook_signature import new_secret

# Endpoints a tenant may register: one per receiving system is the use.
MAX_ENDPOINTS = 20


class EndpointNotFound(LookupError):
    pass


class DeliveryNotFound(LookupError):
    pass


class TooManyEndpoints(ValueError):
    pass


class EndpointDisabled(ValueError):
    pass


async def list_endpoints(pool: asyncpg.Pool, tenant_id: UUID) -> list[asyncpg.Record]:
    return list(await OneTenant(pool).fetch(tenant_id, queries.SELECT_ENDPOINTS, tenant_id))


async def get_endpoint(pool: asyncpg.Pool, tenant_id: UUID, endpoint_id: UUID) -> asyncpg.Record:
    row = await OneTenant(pool).fetchrow(tenant_id, queries.SELECT_ENDPOINT, tenant_id, endpoint_id)
    if row is None:
        raise EndpointNotFound(endpoint_id)
    return row


async def create_endpoint(
    pool: asyncpg.Pool,
    box: SecretBox,
    tenant_id: UUID,
    *,
    url: str,
    description: str,
    event_types: Sequence[str],
    actor: str,
) -> tuple[asyncpg.Record, str]:
    """The new endpoint and its signing secret (shown this once; stored encrypted)."""
    secret = new_secret()
    async with tenant_transaction(pool, tenant_id) as conn:
        await conn.execute(queries.LOCK_TENANT, tenant_id)
        if await conn.fetchval(queries.COUNT_ENDPOINTS, tenant_id) >= MAX_ENDPOINTS:
            raise TooManyEndpoints(f"a tenant may register at most {MAX_ENDPOINTS} webhook endpoints")
        row = await conn.fetchrow(
            queries.INSERT_ENDPOINT,
            uuid.uuid4(),
            tenant_id,
            url,
            description,
            list(event_types),
            box.encrypt(secret),
        )
        await audit.record(
            conn,
            actor=actor,
            action="webhook_endpoint.created",
            tenant_id=tenant_id,
            detail={"endpoint_id": row["id"], "event_types": list(event_types)},
        )
    return row, secret


async def update_endpoint(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    endpoint_id: UUID,
    *,
    url: str | None,
    description: str | None,
    event_types: Sequence[str] | None,
    enabled: bool | None,
    actor: str,
) -> asyncpg.Record:
    async with tenant_transaction(pool, tenant_id) as conn:
        row = await conn.fetchrow(
            queries.UPDATE_ENDPOINT,
            tenant_id,
            endpoint_id,
            url,
            description,
            list(event_types) if event_types is not None else None,
            enabled,
        )
        if row is None:
            raise EndpointNotFound(endpoint_id)
        changed = [
            name
            for name, value in (
                ("url", url),
                ("description", description),
                ("event_types", event_types),
                ("enabled", enabled),
            )
            if value is not None
        ]
        await audit.record(
            conn,
            actor=actor,
            action="webhook_endpoint.updated",
            tenant_id=tenant_id,
            detail={"endpoint_id": endpoint_id, "changed": changed, "enabled": row["enabled"]},
        )
    return row


async def delete_endpoint(pool: asyncpg.Pool, tenant_id: UUID, endpoint_id: UUID, *, actor: str) -> None:
    """Removes the endpoint with its deliveries and their attempts."""
    async with tenant_transaction(pool, tenant_id) as conn:
        if await conn.fetchval(queries.DELETE_ENDPOINT, tenant_id, endpoint_id) is None:
            raise EndpointNotFound(endpoint_id)
        await audit.record(
            conn,
            actor=actor,
            action="webhook_endpoint.deleted",
            tenant_id=tenant_id,
            detail={"endpoint_id": endpoint_id},
        )


async def list_deliveries(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    *,
    endpoint_id: UUID | None,
    state: str | None,
    before_id: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    return list(
        await OneTenant(pool).fetch(
            tenant_id, queries.SELECT_DELIVERIES, tenant_id, endpoint_id, state, before_id, limit
        )
    )


async def get_delivery(
    pool: asyncpg.Pool, tenant_id: UUID, delivery_id: int
) -> tuple[dict[str, Any], list[asyncpg.Record]]:
    """A delivery with the event it carries, and every attempt with its answer."""
    row = await OneTenant(pool).fetchrow(tenant_id, queries.SELECT_DELIVERY, tenant_id, delivery_id)
    if row is None:
        raise DeliveryNotFound(delivery_id)
    delivery = dict(row)
    delivery["event"] = orjson.loads(delivery.pop("body"))
    return delivery, list(
        await OneTenant(pool).fetch(tenant_id, queries.SELECT_ATTEMPTS, tenant_id, delivery_id)
    )


async def resend(pool: asyncpg.Pool, tenant_id: UUID, delivery_id: int) -> asyncpg.Record:
    """A new delivery of the same event to the same endpoint, due at once."""
    async with tenant_transaction(pool, tenant_id) as conn:
        enabled = await conn.fetchval(queries.SELECT_DELIVERY_ENDPOINT_ENABLED, tenant_id, delivery_id)
        if enabled is None:
            raise DeliveryNotFound(delivery_id)
        if not enabled:
            raise EndpointDisabled("the endpoint is disabled: enable it (PATCH enabled=true) to resend")
        row = await conn.fetchrow(queries.RESEND_DELIVERY, tenant_id, delivery_id)
    return row
