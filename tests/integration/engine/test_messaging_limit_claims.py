"""WhatsApp messaging limits at the claim, on the real database: a limited tenant claims only as many
numbers new to the moving window as its tier allows, numbers already in the window are free,
claims that race never pass the tier, a claim left short holds its campaign until the window has
room, and the running count always equals the contacts in the window."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import asyncpg
import pytest

from services.sender import queries
from tests.integration.engine.test_engine_claims import LEASE_S, phones, tenant_and_campaign

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def limit_tenant(pool: asyncpg.Pool, tenant_id: uuid.UUID, tier: int | None) -> None:
    await pool.execute("UPDATE tenants SET messaging_limit = $2 WHERE id = $1", tenant_id, tier)


async def second_campaign(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, numbers: list[str]
) -> tuple[uuid.UUID, list[int]]:
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template, state)"
        " VALUES ($1, $2, 'c2', '{}', '{}', 'running')",
        campaign_id,
        tenant_id,
    )
    rows = await pool.fetch(
        "INSERT INTO recipients (tenant_id, campaign_id, phone_e164)"
        " SELECT $1, $2, p FROM unnest($3::text[]) AS p RETURNING id",
        tenant_id,
        campaign_id,
        numbers,
    )
    return campaign_id, sorted(row["id"] for row in rows)


async def locked_claim(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, campaign_id: uuid.UUID, ids: list[int], window_s: float
) -> list[asyncpg.Record]:
    """A limited tenant's claim as the sender makes it: the lock, then the claim, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(queries.LOCK_SEND_LIMIT, tenant_id)
        rows: list[asyncpg.Record] = await conn.fetch(
            queries.CLAIM, tenant_id, campaign_id, ids, LEASE_S, False, window_s, True
        )
        return rows


def claimed(rows: list[asyncpg.Record]) -> list[int]:
    return [row["id"] for row in rows if row["id"] is not None]


async def in_window(pool: asyncpg.Pool, tenant_id: uuid.UUID, window_s: float) -> tuple[int, int]:
    """The running count and the contacts really inside the window at the count's time."""
    row = await pool.fetchrow(
        "SELECT w.in_window, (SELECT count(*) FROM tenant_contacts tc WHERE tc.tenant_id = w.tenant_id"
        " AND tc.last_contacted_at > w.counted_at - make_interval(secs => $2))::int AS real"
        " FROM tenant_send_limits w WHERE w.tenant_id = $1",
        tenant_id,
        window_s,
    )
    return row["in_window"], row["real"]


async def test_a_tier_250_tenant_claims_250_new_numbers_and_its_campaign_is_held_until_the_window_has_room(
    pool: asyncpg.Pool,
) -> None:
    # Given a tenant limited to 250 numbers a day with a 400-recipient campaign
    numbers = phones(400)
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=numbers, account=None)
    await limit_tenant(pool, tenant_id, 250)

    # When chunks of 100 are claimed one after another
    taken: list[int] = []
    summaries = []
    for start in range(0, 400, 100):
        rows = await locked_claim(pool, tenant_id, campaign_id, ids[start : start + 100], 86_400)
        taken += claimed(rows)
        summaries.append(rows[0])

    # Then exactly the first 250 were claimed, the other 150 wait untouched
    assert taken == ids[:250]
    left = await pool.fetch("SELECT state, attempts FROM recipients WHERE id = ANY($1)", ids[250:])
    assert {(row["state"], row["attempts"]) for row in left} == {("pending", 0)}
    # And the claims left short held the campaign until the first contact leaves the window
    assert [s["hold_reason"] for s in summaries] == [None, None, "messaging_limit", "messaging_limit"]
    first = await pool.fetchval(
        "SELECT min(last_contacted_at) FROM tenant_contacts WHERE tenant_id = $1", tenant_id
    )
    held = await pool.fetchrow("SELECT hold_reason, hold_until FROM campaigns WHERE id = $1", campaign_id)
    assert held["hold_reason"] == "messaging_limit"
    assert held["hold_until"] == first + timedelta(days=1)
    assert await in_window(pool, tenant_id, 86_400) == (250, 250)


async def test_numbers_already_in_the_window_cost_nothing_and_other_tenants_are_not_limited(
    pool: asyncpg.Pool,
) -> None:
    # Given a tier-250 tenant that messaged 250 numbers, and an unlimited tenant
    numbers = phones(250)
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=numbers, account=None)
    await limit_tenant(pool, tenant_id, 250)
    assert len(claimed(await locked_claim(pool, tenant_id, campaign_id, ids, 86_400))) == 250
    other, other_campaign, other_ids = await tenant_and_campaign(pool, phones=phones(300), account=None)

    # When a second campaign of the limited tenant goes to 100 of the same numbers and 50 new ones
    again, again_ids = await second_campaign(pool, tenant_id, numbers[:100] + phones(50))
    rows = await locked_claim(pool, tenant_id, again, again_ids, 86_400)
    # And the unlimited tenant claims 300 without the lock
    other_rows = await pool.fetch(
        queries.CLAIM, other, other_campaign, other_ids, LEASE_S, False, 86_400.0, False
    )

    # Then the 100 known numbers were claimed and the 50 new ones held
    taken = await pool.fetch("SELECT phone_e164 FROM recipients WHERE id = ANY($1)", claimed(rows))
    assert {row["phone_e164"] for row in taken} == set(numbers[:100])
    assert rows[0]["hold_reason"] == "messaging_limit"
    # And the unlimited tenant got all 300, counted nowhere
    assert len(claimed(other_rows)) == 300 and other_rows[0]["hold_reason"] is None
    assert await pool.fetchval("SELECT count(*) FROM tenant_contacts WHERE tenant_id = $1", other) == 0


async def test_a_claim_without_the_lock_for_a_tenant_that_became_limited_takes_nothing_and_says_so(
    pool: asyncpg.Pool,
) -> None:
    # Given a tenant whose limit was set after a sender read it as unlimited
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=phones(10), account=None)
    await limit_tenant(pool, tenant_id, 250)

    # When that sender claims without the lock
    rows = await pool.fetch(queries.CLAIM, tenant_id, campaign_id, ids, LEASE_S, False, 86_400.0, False)

    # Then nothing was claimed, the campaign is not held, and the answer asks for the lock
    assert claimed(rows) == [] and rows[0]["needs_lock"] is True and rows[0]["hold_reason"] is None
    states = await pool.fetch("SELECT DISTINCT state FROM recipients WHERE id = ANY($1)", ids)
    assert [row["state"] for row in states] == ["pending"]


async def test_claims_of_two_campaigns_racing_on_many_connections_never_pass_the_tier(
    pool: asyncpg.Pool,
) -> None:
    # Given a tier-250 tenant with two campaigns of 300 distinct numbers each
    tenant_id, first, first_ids = await tenant_and_campaign(pool, phones=phones(300), account=None)
    await limit_tenant(pool, tenant_id, 250)
    second, second_ids = await second_campaign(pool, tenant_id, phones(300))

    # When both are claimed at once in chunks of 20 on eight connections
    chunks = [(first, first_ids[i : i + 20]) for i in range(0, 300, 20)]
    chunks += [(second, second_ids[i : i + 20]) for i in range(0, 300, 20)]
    results = await asyncio.gather(
        *(locked_claim(pool, tenant_id, campaign, ids, 86_400) for campaign, ids in chunks)
    )

    # Then 250 numbers were claimed in all, and both campaigns are held
    assert sum(len(claimed(rows)) for rows in results) == 250
    assert await pool.fetchval("SELECT count(*) FROM tenant_contacts WHERE tenant_id = $1", tenant_id) == 250
    holds = await pool.fetch("SELECT hold_reason FROM campaigns WHERE id = ANY($1)", [first, second])
    assert {row["hold_reason"] for row in holds} == {"messaging_limit"}


async def test_as_the_window_moves_numbers_leave_it_and_the_count_follows_them(pool: asyncpg.Pool) -> None:
    # Given a tier-250 tenant with a 2-second window that claimed 250 numbers, then 100 more
    window_s = 2.0
    numbers = phones(500)
    tenant_id, campaign_id, ids = await tenant_and_campaign(pool, phones=numbers, account=None)
    await limit_tenant(pool, tenant_id, 250)
    assert len(claimed(await locked_claim(pool, tenant_id, campaign_id, ids[:250], window_s))) == 250
    refused = await locked_claim(pool, tenant_id, campaign_id, ids[250:350], window_s)
    assert claimed(refused) == [] and refused[0]["hold_reason"] == "messaging_limit"

    # When the window has passed and the sender's maintenance ended the hold
    deadline = time.monotonic() + 30
    ended: list[asyncpg.Record] = []
    while not ended and time.monotonic() < deadline:
        ended = [row for row in await pool.fetch(queries.HOLDS_ENDED, 100) if row["id"] == campaign_id]
        await asyncio.sleep(0.2)
    assert ended and ended[0]["hold_reason"] == "messaging_limit"
    later = await locked_claim(pool, tenant_id, campaign_id, ids[250:500], window_s)

    # Then the next 250 new numbers are claimed, and the count equals the contacts in the window
    assert claimed(later) == ids[250:500]
    counted, real = await in_window(pool, tenant_id, window_s)
    assert counted == real == 250
