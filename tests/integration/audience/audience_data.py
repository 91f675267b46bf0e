"""Booking data written straight into the tables for audience tests, one fresh tenant per dataset."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from fastapi import APIRouter, FastAPI

from services.segmenter.audience.model import Audience
from services.segmenter.audience.query import recipients_query
from shared.apikeys import display_prefix, hash_api_key, new_api_key
from shared.http import install_common
from shared.phones import to_e164_or_none


@dataclass
class Appt:
    ext: str
    customer: str
    starts_at: datetime
    created_at: datetime
    status: str = "approved"
    status_changed_at: datetime | None = None
    service: str | None = None
    location: str | None = None


@dataclass
class Dataset:
    customers: dict[str, str | None]
    appointments: list[Appt] = field(default_factory=list)
    custom_statuses: dict[str, bool] = field(default_factory=dict)
    suppressed: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=lambda: ["cut", "color"])
    locations: list[str] = field(default_factory=lambda: ["north", "south"])


async def new_tenant(conn: asyncpg.Connection, tz: str) -> UUID:
    tenant_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from, timezone)"
        " VALUES ($1, 'salon', $2, 'x', '+14155550100', $3)",
        tenant_id,
        "AC" + tenant_id.hex,
        tz,
    )
    return tenant_id


async def seed(pool: asyncpg.Pool, data: Dataset, tz: str = "America/New_York") -> UUID:
    async with pool.acquire() as conn, conn.transaction():
        tenant_id = await new_tenant(conn, tz)
        services = {
            ext: await conn.fetchval(
                "INSERT INTO services (tenant_id, external_id, name) VALUES ($1, $2, $2) RETURNING id",
                tenant_id,
                ext,
            )
            for ext in data.services
        }
        locations = {
            ext: await conn.fetchval(
                "INSERT INTO locations (tenant_id, external_id, name) VALUES ($1, $2, $2) RETURNING id",
                tenant_id,
                ext,
            )
            for ext in data.locations
        }
        for name, cancelled in data.custom_statuses.items():
            await conn.execute(
                "INSERT INTO appointment_statuses (tenant_id, name, counts_as_cancelled) VALUES ($1, $2, $3)",
                tenant_id,
                name,
                cancelled,
            )
        customers = {}
        for ext, phone in data.customers.items():
            customers[ext] = await conn.fetchval(
                "INSERT INTO customers (tenant_id, external_id, first_name, phone_raw, phone_e164)"
                " VALUES ($1, $2, $2, $3, $4) RETURNING id",
                tenant_id,
                ext,
                phone,
                to_e164_or_none(phone),
            )
        for a in data.appointments:
            await conn.execute(
                "INSERT INTO appointments (tenant_id, external_id, customer_id, service_id, location_id,"
                " starts_at,"
                " created_at, status, status_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                tenant_id,
                a.ext,
                customers[a.customer],
                services.get(a.service) if a.service else None,
                locations.get(a.location) if a.location else None,
                a.starts_at,
                a.created_at,
                a.status,
                a.status_changed_at or a.created_at,
            )
        for phone in data.suppressed:
            await conn.execute(
                "INSERT INTO suppressions (tenant_id, phone_e164, source) VALUES ($1, $2, 'manual')",
                tenant_id,
                phone,
            )
    return tenant_id


async def select_recipients(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    audience: Audience,
    now: datetime,
    tz: str = "America/New_York",
    **kw: Any,
) -> dict[str, tuple[str, str | None]]:
    """phone -> (customer external id, appointment external id) as the snapshot would select."""
    sql, params = recipients_query(audience, tenant_id=tenant_id, now=now, tz=tz, **kw)
    rows = await pool.fetch(
        f"SELECT c.external_id AS customer, a.external_id AS appointment, r.phone_e164"
        f" FROM ({sql}) r JOIN customers c ON c.id = r.customer_id"
        " LEFT JOIN appointments a ON a.id = r.appointment_id",
        *params,
    )
    return {row["phone_e164"]: (row["customer"], row["appointment"]) for row in rows}


async def api_key_for(pool: asyncpg.Pool, tenant_id: UUID) -> str:
    key = new_api_key()
    await pool.execute(
        "INSERT INTO api_keys (tenant_id, key_hash, prefix) VALUES ($1, $2, $3)",
        tenant_id,
        hash_api_key(key),
        display_prefix(key),
    )
    return key


def api_client(pool: asyncpg.Pool, key: str, *routers: APIRouter) -> httpx.AsyncClient:
    """The given routers on an app sharing the test pool, with the service's error bodies."""
    app = FastAPI()
    install_common(app, {})
    app.state.pool = pool
    for router in routers:
        app.include_router(router)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://segmenter", headers={"X-API-Key": key}
    )
