"""Seeding and observing campaigns for the engine's end-to-end tests.

Customers are written straight into the booking tables (fast for tens of thousands); tenants and
campaigns go through the segmenter's API, so snapshot, publication and lifecycle are the real ones.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx

from tests.e2e.helpers import FINAL_STATES, TenantHandle, create_tenant, phone
from tests.support import OPERATOR_TOKEN, Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

UNSETTLED = {"pending", "queued", "sending", "retry_wait", "unknown"}


async def seed_customers(
    pool: asyncpg.Pool, tenant: TenantHandle, count: int, *, start: int = 0
) -> list[str]:
    """``count`` customers with distinct valid numbers; returns the numbers."""
    await pool.execute(
        """
        INSERT INTO customers (tenant_id, external_id, first_name, last_name, phone_raw, phone_e164)
        SELECT $1, 'c-' || i, 'First' || i, 'Last' || i, p, p
        FROM generate_series($2::int, $3::int) AS i,
             LATERAL (SELECT '+1415' || lpad((2000000 + i)::text, 7, '0')) AS x(p)
        ON CONFLICT (tenant_id, external_id) DO NOTHING
        """,
        uuid.UUID(tenant.id),
        start,
        start + count - 1,
    )
    return [phone(i) for i in range(start, start + count)]


async def api(stack: Stack, tenant: TenantHandle, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60, headers=tenant.headers) as client:
        return await client.request(method, path, **kwargs)


async def states(pool: asyncpg.Pool, campaign_id: str | uuid.UUID) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT state, count(*)::int AS n FROM recipients WHERE campaign_id = $1 GROUP BY state",
        uuid.UUID(str(campaign_id)),
    )
    return {row["state"]: row["n"] for row in rows}


async def wait_settled(
    pool: asyncpg.Pool, campaign_id: str | uuid.UUID, total: int, timeout_s: float, stack: Stack | None = None
) -> dict[str, int]:
    """Until every recipient is in a final state; returns the counts by state."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = await states(pool, campaign_id)
        if sum(counts.values()) == total and not set(counts) & UNSETTLED:
            assert set(counts) <= FINAL_STATES
            return counts
        if time.monotonic() > deadline:
            logs = stack.logs() if stack else ""
            raise TimeoutError(f"not settled after {timeout_s}s: {counts}\n{logs}")
        await asyncio.sleep(0.25)


async def simulator_stats(stack: Stack, account_sid: str, **kwargs: Any) -> dict[str, Any]:
    async with SimulatorAdmin(stack.simulator_url) as sim:
        return await sim.stats(account_sid, **kwargs)


async def set_faults(stack: Stack, account_sid: str | None = None, **knobs: Any) -> None:
    async with SimulatorAdmin(stack.simulator_url) as sim:
        await sim.set_faults(knobs, account_sid=account_sid)


async def tenant_with(stack: Stack, *, rate: int | None, **fields: Any) -> TenantHandle:
    """A tenant created with the given extra fields (credits plan, test numbers, ...)."""
    return await create_tenant(stack, rate=rate, **fields)


async def operator(stack: Stack, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=stack.api_url, timeout=60, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    ) as client:
        return await client.request(method, path, **kwargs)


async def sent_count(pool: asyncpg.Pool, campaign_id: str | uuid.UUID) -> int:
    counts = await states(pool, campaign_id)
    return sum(counts.get(state, 0) for state in ("sent", "delivered", "read"))


async def wait_sent(
    pool: asyncpg.Pool, campaign_id: str | uuid.UUID, at_least: int, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while (count := await sent_count(pool, campaign_id)) < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} sent, fewer than {at_least}, after {timeout_s}s")
        await asyncio.sleep(0.1)
