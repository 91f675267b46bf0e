"""Timestamps that read right: each message's sent_at is the time Twilio accepted that message
(its own, not its chunk's), never after its delivery or read."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from tests.e2e.engine.engine_helpers import (
    seed_customers,
    wait_settled,
)
from tests.e2e.helpers import create_campaign, new_tenant
from tests.support import Stack


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
