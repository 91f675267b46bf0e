"""Inbound messages: stored once, STOP-family words suppress, START/UNSTOP lift an inbound opt-out."""

from __future__ import annotations

import asyncpg
import httpx

from tests.integration.tracker.helpers import RunningTracker, eventually, new_sid, seed_tenant


async def _suppression(pool: asyncpg.Pool, tenant_id: object, phone: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT source, reason FROM suppressions WHERE tenant_id = $1 AND phone_e164 = $2", tenant_id, phone
    )


async def _events(pool: asyncpg.Pool, tenant_id: object, phone: str) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT action, source FROM suppression_events WHERE tenant_id = $1 AND phone_e164 = $2 ORDER BY id",
        tenant_id,
        phone,
    )
    return [(row["action"], row["source"]) for row in rows]


async def test_stop_suppresses_the_number_and_start_lifts_it_with_both_changes_recorded(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a tenant and a customer's number
    tenant = await seed_tenant(pool)
    number = "+14155550111"

    # When the customer replies " stop " (the same message delivered twice)
    sid = new_sid()
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(2):
            answer = await tracker.post_inbound(client, tenant, sender=number, body=" stop ", sid=sid)
            assert answer.status_code == 200

    # Then the number is suppressed with source inbound, and the message stored once
    suppression = await eventually(lambda: _suppression(pool, tenant.id, number))
    assert suppression is not None and suppression["source"] == "inbound"
    stored = await pool.fetch("SELECT action FROM inbound_messages WHERE tenant_id = $1", tenant.id)
    assert [row["action"] for row in stored] == ["opt_out"]

    # When the customer later sends START
    async with httpx.AsyncClient(timeout=10) as client:
        await tracker.post_inbound(client, tenant, sender=number, body="START")

    # Then the suppression is gone, and both changes are in its history
    async def lifted() -> bool:
        return await _suppression(pool, tenant.id, number) is None

    assert await eventually(lifted)
    assert await _events(pool, tenant.id, number) == [("added", "inbound"), ("removed", "inbound")]


async def test_start_does_not_lift_a_suppression_an_operator_added(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a number suppressed by hand
    tenant = await seed_tenant(pool)
    number = "+14155550112"
    await pool.execute(
        "INSERT INTO suppressions (tenant_id, phone_e164, source, reason)"
        " VALUES ($1, $2, 'manual', 'asked by phone')",
        tenant.id,
        number,
    )

    # When the customer sends UNSTOP
    async with httpx.AsyncClient(timeout=10) as client:
        await tracker.post_inbound(client, tenant, sender=number, body="unstop")

    # Then the message is stored but the suppression stays
    async def stored() -> bool:
        count = await pool.fetchval("SELECT count(*) FROM inbound_messages WHERE tenant_id = $1", tenant.id)
        return bool(count == 1)

    assert await eventually(stored)
    suppression = await _suppression(pool, tenant.id, number)
    assert suppression is not None and suppression["source"] == "manual"
    assert await _events(pool, tenant.id, number) == []


async def test_a_tenants_own_keyword_in_another_language_opts_out(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    tenant = await seed_tenant(pool, opt_out_keywords=["BAJA", "Désabonner"], opt_in_keywords=["ALTA"])
    number = "+14155550113"
    async with httpx.AsyncClient(timeout=10) as client:
        await tracker.post_inbound(client, tenant, sender=number, body="désabonner")
    suppression = await eventually(lambda: _suppression(pool, tenant.id, number))
    assert suppression is not None and suppression["source"] == "inbound"


async def test_an_ordinary_reply_is_stored_and_changes_nothing(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    tenant = await seed_tenant(pool)
    number = "+14155550114"
    async with httpx.AsyncClient(timeout=10) as client:
        await tracker.post_inbound(client, tenant, sender=number, body="Can I stop by at 5?")

    async def stored() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT phone_e164, body, action FROM inbound_messages WHERE tenant_id = $1", tenant.id
        )

    row = await eventually(stored)
    assert row is not None
    assert (row["phone_e164"], row["body"], row["action"]) == (number, "Can I stop by at 5?", None)
    assert await _suppression(pool, tenant.id, number) is None
