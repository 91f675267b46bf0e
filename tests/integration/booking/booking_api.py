"""A tenant with an API key and a client for the booking and audience routes on the test pool."""

from __future__ import annotations

import uuid
from uuid import UUID

import asyncpg
import httpx
from fastapi import FastAPI

from services.segmenter import routes_audience, routes_booking
from shared.apikeys import display_prefix, hash_api_key, new_api_key
from shared.http import install_common


async def new_tenant(
    pool: asyncpg.Pool, *, region: str = "US", tz: str = "America/New_York"
) -> tuple[UUID, str]:
    tenant_id = uuid.uuid4()
    key = new_api_key()
    await pool.execute(
        "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from, timezone,"
        " default_region) VALUES ($1, 'salon', $2, 'x', '+14155550100', $3, $4)",
        tenant_id,
        "AC" + tenant_id.hex,
        tz,
        region,
    )
    await pool.execute(
        "INSERT INTO api_keys (tenant_id, key_hash, prefix) VALUES ($1, $2, $3)",
        tenant_id,
        hash_api_key(key),
        display_prefix(key),
    )
    return tenant_id, key


def client(pool: asyncpg.Pool, key: str) -> httpx.AsyncClient:
    app = FastAPI()
    install_common(app, {})
    app.state.pool = pool
    app.include_router(routes_booking.router)
    app.include_router(routes_audience.router)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://segmenter", headers={"X-API-Key": key}
    )


async def load_raw(pool: asyncpg.Pool, tenant_id: uuid.UUID, count: int) -> None:
    """Customers and an appointment each, written straight into the tables (a restore, a script)."""
    await pool.execute(
        "INSERT INTO customers (tenant_id, external_id, first_name, phone_raw, phone_e164)"
        " SELECT $1, 'r' || g, 'F' || g, p, p"
        " FROM (SELECT g, '+1646' || lpad(g::text, 7, '0') AS p FROM generate_series(1, $2) g) x",
        tenant_id,
        count,
    )
    await pool.execute(
        "INSERT INTO appointments"
        " (tenant_id, external_id, customer_id, starts_at, created_at, status, status_changed_at)"
        " SELECT $1, 'a' || c.id, c.id, timestamptz '2026-03-25 10:00-04', timestamptz '2026-03-18 09:00-04',"
        " 'approved', timestamptz '2026-03-18 09:00-04' FROM customers c WHERE c.tenant_id = $1",
        tenant_id,
    )
