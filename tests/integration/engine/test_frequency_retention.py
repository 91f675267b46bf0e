"""Frequency-cap retention on the real database, as the sender's own role: entries whose every
claim is older than the longest cap window go, a bounded slice at a time, whichever tenant they
belong to; entries with a claim inside that window stay, and a number still inside a 365-day cap
is refused after the retention ran."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.sender.frequency_retention import LONGEST_CAP_DAYS, FrequencyRetention
from shared.db import create_pool
from tests.integration.engine.test_engine_claims import claim, phones, row_states, settle
from tests.integration.engine.test_engine_frequency_cap_claims import campaign, capped_tenant
from tests.support import IsolatedEnvironment

pytestmark = pytest.mark.asyncio(loop_scope="session")

INTERVAL_S = 3600.0


@pytest.fixture
async def sender_pool(pool: asyncpg.Pool, isolated_env: IsolatedEnvironment) -> AsyncIterator[asyncpg.Pool]:
    """A pool logged in as a member of the sender's runtime role, as a deployment connects it."""
    login = f"wce_login_{uuid.uuid4().hex[:10]}_sender"
    await pool.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE wce_sender')
    sender = await create_pool(
        isolated_env.database_url.replace("postgres@", f"{login}@"), min_size=1, max_size=2
    )
    try:
        yield sender
    finally:
        await sender.close()
        await pool.execute(f'DROP ROLE IF EXISTS "{login}"')


async def backdate(pool: asyncpg.Pool, tenant: uuid.UUID, phone: str, *days_ago: int) -> None:
    """The number's entry as if its claims had been made that many days ago (oldest first)."""
    await pool.execute(
        "UPDATE contact_frequency"
        " SET recipient_ids = array_fill(recipient_ids[1], ARRAY[cardinality($3::int[])]),"
        "     claimed_at = ARRAY(SELECT now() - make_interval(days => d) FROM unnest($3::int[]) d)"
        " WHERE tenant_id = $1 AND phone_e164 = $2",
        tenant,
        phone,
        list(days_ago),
    )


async def entries(pool: asyncpg.Pool, tenant: uuid.UUID) -> list[str]:
    rows = await pool.fetch(
        "SELECT phone_e164 FROM contact_frequency WHERE tenant_id = $1 ORDER BY phone_e164", tenant
    )
    return [row["phone_e164"] for row in rows]


async def test_entries_older_than_the_longest_cap_window_go_and_a_capped_number_stays_refused(
    pool: asyncpg.Pool, sender_pool: asyncpg.Pool
) -> None:
    # Given a tenant capped at 1 message per 365 days whose four numbers got a campaign message:
    # one today, one 364 days ago, one 400 days ago, and one 400 and again 10 days ago
    today, days_364, days_400, twice = numbers = sorted(phones(4))
    capped = await capped_tenant(pool, (1, LONGEST_CAP_DAYS))
    first, ids = await campaign(pool, capped, numbers)
    rows = await claim(pool, capped, first, ids)
    await settle(pool, capped, [(row["id"], row["claimed_at"], "sent") for row in rows])
    await backdate(pool, capped, days_364, 364)
    await backdate(pool, capped, days_400, 400)
    await backdate(pool, capped, twice, 400, 10)
    # And a tenant without a cap any more, with one entry from today and 12,000 from 500 days ago
    uncapped = await capped_tenant(pool, None)
    await pool.execute(
        "INSERT INTO contact_frequency (tenant_id, phone_e164, recipient_ids, claimed_at)"
        " SELECT $1, '+1555' || lpad(n::text, 7, '0'), ARRAY[n::bigint],"
        "        ARRAY[now() - make_interval(days => CASE WHEN n = 0 THEN 0 ELSE 500 END)]"
        " FROM generate_series(0, 12000) n",
        uncapped,
    )

    # When the retention runs as the sender's maintenance runs it, with slices of 5,000, until
    # it waits for its next interval
    now = [0.0]
    retention = FrequencyRetention(sender_pool, interval_s=INTERVAL_S, monotonic=lambda: now[0])
    slices, took = [], []
    while True:
        started = time.monotonic()
        deleted = await retention.run_if_due()
        took.append(time.monotonic() - started)
        slices.append(deleted)
        if deleted < 5000:
            break
    waiting = await retention.run_if_due()
    now[0] += INTERVAL_S
    next_interval = await retention.run_if_due()
    print(f"\nslices={slices} slice_s={[round(t, 3) for t in took]}")

    # Then the 12,001 entries without a claim in 365 days went, in slices of at most 5,000, and
    # nothing more is deleted before the next interval
    assert slices == [5000, 5000, 2001]
    assert (waiting, next_interval) == (0, 0)
    assert await entries(pool, capped) == [today, days_364, twice]
    assert await entries(pool, uncapped) == ["+15550000000"]

    # And a second campaign to the four numbers reaches only the one last messaged 400 days ago:
    # the cap still refuses the others, whose entries the retention kept
    second, second_ids = await campaign(pool, capped, numbers)
    await claim(pool, capped, second, second_ids)
    assert await row_states(pool, second_ids) == ["skipped", "skipped", "sending", "skipped"]
