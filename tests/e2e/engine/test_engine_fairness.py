"""A rate-limited tenant's small campaign beside a neighbour sending without a limit: its first
message goes out at once, it finishes close to its time alone, and nothing of it is handed back
as late (the tight figures — first send within 1 s, 1.5× the time alone beside a 100,000-message
neighbour — are the ``noisy_neighbour`` benchmark's; this bound is looser for a shared machine).
And timestamps that read right: each message's own sent_at, never after its delivery or read."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from tests.e2e.engine.engine_helpers import (
    seed_customers,
    sent_count,
    simulator_stats,
    wait_sent,
    wait_settled,
)
from tests.e2e.helpers import TenantHandle, create_campaign, new_tenant
from tests.support import Stack

SMALL = 100
RATE = 80
NEIGHBOUR = 20_000


async def small_campaign(stack: Stack, pool: asyncpg.Pool, start: int) -> tuple[TenantHandle, str, float]:
    tenant = await new_tenant(stack, rate=RATE)
    await seed_customers(pool, tenant, SMALL, start=start)
    started_at = time.time()
    campaign = await create_campaign(stack, tenant)
    await wait_settled(pool, campaign["id"], SMALL, timeout_s=120, stack=stack)
    return tenant, campaign["id"], started_at


async def test_a_small_rate_limited_campaign_beside_an_unlimited_neighbour_starts_at_once_and_keeps_its_pace(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given the small campaign's time alone on this machine
    alone, _, alone_started = await small_campaign(engine_stack, pool, 600_000)
    alone_stats = await simulator_stats(engine_stack, alone.account_sid)
    alone_s = alone_stats["last_at"] - alone_started

    # And a neighbour sending 20,000 messages without a rate limit, in full flow
    neighbour = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, neighbour, NEIGHBOUR, start=610_000)
    neighbour_campaign = await create_campaign(engine_stack, neighbour)
    await wait_sent(pool, neighbour_campaign["id"], 2_000)

    # When the small campaign runs again beside it
    small, small_id, started = await small_campaign(engine_stack, pool, 640_000)

    # Then its first message went out within 2 s, it took at most 3× its time alone, it kept
    # its rate, and none of it was handed back as late, while the neighbour was still sending
    stats = await simulator_stats(engine_stack, small.account_sid)
    first_s, last_s = stats["first_at"] - started, stats["last_at"] - started
    neighbour_sent = await sent_count(pool, neighbour_campaign["id"])
    late = await pool.fetchval(
        "SELECT count(*) FROM message_events WHERE campaign_id = $1 AND detail = 'not sent: late'",
        uuid.UUID(small_id),
    )
    print(
        f"\nalone {alone_s:.2f}s; beside: first {first_s:.2f}s, last {last_s:.2f}s, {late} late,"
        f" neighbour {neighbour_sent} sent"
    )
    assert stats["accepted_total"] == SMALL
    assert first_s <= 2.0
    assert last_s <= 3 * alone_s
    assert stats["max_in_any_second"] <= RATE
    assert late == 0
    assert neighbour_sent < NEIGHBOUR
    await wait_settled(pool, neighbour_campaign["id"], NEIGHBOUR, timeout_s=300, stack=engine_stack)


async def test_sent_at_is_each_messages_own_acceptance_and_never_after_its_delivery_or_read(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a 500-recipient campaign without a rate limit, in chunks of 100 answered together
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 500, start=700_000)
    campaign = await create_campaign(engine_stack, tenant)
    await wait_settled(pool, campaign["id"], 500, timeout_s=120, stack=engine_stack)

    # When its delivery and read callbacks have come in
    campaign_id = uuid.UUID(campaign["id"])
    deadline = time.monotonic() + 60
    while await pool.fetchval(
        "SELECT count(*) FROM recipients WHERE campaign_id = $1 AND read_at IS NULL", campaign_id
    ):
        assert time.monotonic() < deadline, "read callbacks did not all arrive"
        await asyncio.sleep(0.5)

    # Then every message has a sent_at of its own, no later than its delivery and its read
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT sent_at) AS distinct_sent,"
        " count(*) FILTER (WHERE delivered_at < sent_at OR read_at < sent_at) AS before_sent"
        " FROM recipients WHERE campaign_id = $1",
        campaign_id,
    )
    assert row["n"] == 500
    assert row["distinct_sent"] >= 490
    assert row["before_sent"] == 0
