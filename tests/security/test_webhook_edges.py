"""Webhook edges: deactivated tenants are refused, forged tenant ids cost no query each, a signed
callback replayed with fresh idempotency tokens is kept once."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
import uuid
from typing import Any

import asyncpg
import httpx

from services.tracker.tenant_gate import ActiveTenants, LookupBudget
from tests.integration.tracker.helpers import (
    RunningTracker,
    eventually,
    new_sid,
    seed_tenant,
    signed_headers,
    status_params,
)


async def test_a_deactivated_tenants_webhooks_are_refused_and_write_nothing(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a tenant whose callbacks are accepted
    tenant = await seed_tenant(pool)
    async with httpx.AsyncClient(timeout=10) as client:
        accepted = await tracker.post_status(client, tenant, status_params(new_sid(), "delivered"))
        assert accepted.status_code == 200

        # When the operator deactivates it
        await pool.execute("UPDATE tenants SET active = false WHERE id = $1", tenant.id)

        # Then its signed status callbacks and inbound messages are refused within seconds
        async def refused() -> bool:
            response = await tracker.post_status(client, tenant, status_params(new_sid(), "delivered"))
            return response.status_code == 403

        assert await eventually(refused, timeout_s=10, every_s=0.5)
        sid = new_sid()
        inbound = await tracker.post_inbound(client, tenant, sender="+14155550123", body="STOP", sid=sid)
        assert inbound.status_code == 403
    assert await pool.fetchval("SELECT count(*) FROM inbound_messages WHERE message_sid = $1", sid) == 0
    assert await pool.fetchval("SELECT count(*) FROM suppressions WHERE tenant_id = $1", tenant.id) == 0


async def test_a_replayed_callback_with_fresh_idempotency_tokens_is_kept_once(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a signed callback for a message no recipient has (yet)
    tenant = await seed_tenant(pool)
    sid = new_sid()
    params = status_params(sid, "delivered")

    # When it is replayed ten times, each with a fresh idempotency token
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(10):
            replay = await tracker.post_status(client, tenant, params, idempotency=secrets.token_hex(16))
            assert replay.status_code == 200
        # and the same message's next status arrives once
        await tracker.post_status(
            client, tenant, status_params(sid, "read"), idempotency=secrets.token_hex(16)
        )

    # Then one orphan per status is kept
    async def kept() -> list[str]:
        rows = await pool.fetch(
            "SELECT status FROM orphan_callbacks WHERE tenant_id = $1 AND message_sid = $2 ORDER BY status",
            tenant.id,
            sid,
        )
        return [row["status"] for row in rows]

    assert await eventually(lambda: _equals(kept, ["delivered", "read"]))
    assert await kept() == ["delivered", "read"]


async def _equals(read: Any, expected: object) -> bool:
    return bool(await read() == expected)


async def test_forged_webhooks_for_random_tenants_are_all_refused(tracker: RunningTracker) -> None:
    params = status_params(new_sid(), "delivered")
    async with httpx.AsyncClient(timeout=10) as client:
        codes = set()
        for _ in range(300):
            url = tracker.status_url(uuid.uuid4())
            response = await client.post(url, data=params, headers=signed_headers("x" * 32, url, params))
            codes.add(response.status_code)
    assert codes == {403}


class CountingPool:
    """Stands in for the pool: one active tenant, and every query counted."""

    def __init__(self, active: str) -> None:
        self.active = active
        self.queries = 0

    async def fetch(self, query: str, **_: Any) -> list[dict[str, Any]]:
        self.queries += 1
        return [{"id": self.active}]

    async def fetchval(self, query: str, tenant_id: str, **_: Any) -> bool | None:
        self.queries += 1
        return True if tenant_id == self.active else None


async def test_a_flood_of_forged_tenant_ids_costs_a_bounded_number_of_queries() -> None:
    # Given the gate knows the one active tenant
    active = str(uuid.uuid4())
    pool = CountingPool(active)
    gate = ActiveTenants(pool, lookups_per_s=5, lookup_burst=20)  # type: ignore[arg-type]
    await gate.reload()

    # When ten thousand forged ids arrive at once
    started = time.monotonic()
    admitted = [await gate.admits(str(uuid.uuid4())) for _ in range(10_000)]
    elapsed = time.monotonic() - started

    # Then none is admitted, only the burst (and what refilled meanwhile) reached the database,
    # and the real tenant still passes without a query
    assert not any(admitted)
    assert pool.queries <= 1 + 20 + math.ceil(elapsed * 5)
    queries = pool.queries
    assert await gate.admits(active)
    assert pool.queries == queries


async def test_a_tenant_created_after_the_last_reload_is_found_by_a_lookup() -> None:
    pool = CountingPool(str(uuid.uuid4()))
    gate = ActiveTenants(pool)  # type: ignore[arg-type]
    assert await gate.admits(pool.active)
    assert await gate.admits(pool.active)
    assert pool.queries == 1


def test_the_lookup_budget_refills_at_its_rate() -> None:
    budget = LookupBudget(rate=5, burst=2)
    start = budget._at
    assert budget.take(start) and budget.take(start)
    assert not budget.take(start)
    assert budget.take(start + 0.21)
    assert not budget.take(start + 0.21)


class SlowPool(CountingPool):
    async def fetchval(self, query: str, tenant_id: str, **_: Any) -> bool | None:
        await asyncio.sleep(0.05)
        return await super().fetchval(query, tenant_id)


async def test_a_new_tenants_first_burst_of_callbacks_shares_one_lookup() -> None:
    # Given a tenant created after the gate's last reload, and a lookup budget of 2
    pool = SlowPool(str(uuid.uuid4()))
    gate = ActiveTenants(pool, lookups_per_s=1, lookup_burst=2)  # type: ignore[arg-type]

    # When its first campaign's callbacks arrive all at once
    admitted = await asyncio.gather(*(gate.admits(pool.active) for _ in range(500)))

    # Then every one is admitted after one lookup
    assert all(admitted)
    assert pool.queries == 1
