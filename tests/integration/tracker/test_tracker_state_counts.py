"""A campaign's recipients per state are kept by triggers (migration 1600) and folded by the
tracker: after any mix of the engine's own writes — claims, settles, status callbacks, cancels,
retries of failed rows, new and deleted rows, a deleted campaign, a deleted tenant — and with two
writers at once, the kept counts equal counting the rows, which stays here as the reference."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from services.segmenter import queries as segmenter_queries
from services.sender import queries as sender_queries
from services.tracker import queries as tracker_queries
from services.tracker.state_counts import fold_state_deltas
from shared.db import all_tenants_transaction, create_pool, tenant_transaction
from tests.integration.tracker.helpers import new_sid, seed_campaign, seed_recipients, seed_tenant
from tests.support import IsolatedEnvironment

# The reference: what progress counted before the counts were kept.
COUNTED = """
SELECT state, count(*)::int AS n FROM recipients
WHERE tenant_id = $1 AND campaign_id = $2
GROUP BY state
"""
ROLES = ("segmenter", "sender", "tracker")
LEASE_S = 60
WINDOW_S = 86_400


@dataclass
class Campaign:
    tenant_id: uuid.UUID
    id: uuid.UUID
    next_phone: int


@pytest.fixture(scope="module")
async def as_role(
    pool: asyncpg.Pool, isolated_env: IsolatedEnvironment
) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    """A pool per service, logged in as a member of its runtime role (as a deployment does): the
    triggers append as the writer's own role, under its grants and row-level security."""
    prefix = f"wce_counts_{uuid.uuid4().hex[:10]}"
    pools = {}
    for service in ROLES:
        await pool.execute(f'CREATE ROLE "{prefix}_{service}" LOGIN IN ROLE wce_{service}')
        url = isolated_env.database_url.replace("postgres@", f"{prefix}_{service}@")
        pools[service] = await create_pool(url, min_size=1, max_size=3)
    try:
        yield pools
    finally:
        for service in ROLES:
            await pools[service].close()
            await pool.execute(f'DROP ROLE IF EXISTS "{prefix}_{service}"')


async def _kept_and_counted(pool: asyncpg.Pool, campaign: Campaign) -> tuple[dict[str, int], dict[str, int]]:
    """Both in one snapshot, so they must agree whatever runs meanwhile."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        kept = await conn.fetch(tracker_queries.STATE_COUNTS, campaign.tenant_id, campaign.id)
        counted = await conn.fetch(COUNTED, campaign.tenant_id, campaign.id)
    return {r["state"]: r["n"] for r in kept}, {r["state"]: r["n"] for r in counted}


async def _assert_kept(pool: asyncpg.Pool, campaigns: list[Campaign], step: str) -> None:
    for campaign in campaigns:
        kept, counted = await _kept_and_counted(pool, campaign)
        assert kept == counted, f"after {step}: campaign {campaign.id}"


async def _ids(pool: asyncpg.Pool, campaign: Campaign, states: tuple[str, ...]) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, claimed_at, state FROM recipients WHERE campaign_id = $1 AND state = ANY($2::text[])"
        " ORDER BY id",
        campaign.id,
        list(states),
    )


async def claim(
    pools: dict[str, asyncpg.Pool], pool: asyncpg.Pool, campaign: Campaign, rng: random.Random
) -> None:
    rows = await _ids(pool, campaign, ("pending", "queued", "retry_wait"))
    ids = [r["id"] for r in rng.sample(rows, min(len(rows), rng.randint(1, 12)))]
    async with tenant_transaction(pools["sender"], campaign.tenant_id) as conn:
        await conn.fetch(
            sender_queries.CLAIM, campaign.tenant_id, campaign.id, ids, LEASE_S, False, WINDOW_S, False
        )


async def settle(
    pools: dict[str, asyncpg.Pool], pool: asyncpg.Pool, campaign: Campaign, rng: random.Random
) -> None:
    rows = await _ids(pool, campaign, ("sending", "unknown"))
    # In id order, as the sender's rows are: two writers then queue up rather than deadlock.
    chosen = sorted(rng.sample(rows, min(len(rows), rng.randint(1, 8))), key=lambda r: r["id"])
    outcomes = [rng.choice(("sent", "sent", "retry_wait", "failed", "unknown", "queued")) for _ in chosen]
    async with tenant_transaction(pools["sender"], campaign.tenant_id) as conn:
        await conn.fetch(
            sender_queries.SETTLE,
            campaign.tenant_id,
            [r["id"] for r in chosen],
            [r["claimed_at"] for r in chosen],
            outcomes,
            [new_sid() if o == "sent" else None for o in outcomes],
            [63016 if o == "failed" else None for o in outcomes],
            ["failed" if o == "failed" else None for o in outcomes],
            [False for _ in chosen],
            [None for _ in chosen],
            "sender",
            [False for _ in chosen],
            [time.time() for _ in chosen],
        )


async def callback(
    pools: dict[str, asyncpg.Pool], pool: asyncpg.Pool, campaign: Campaign, rng: random.Random
) -> None:
    rows = await _ids(pool, campaign, ("sent", "delivered", "read"))
    chosen = sorted(rng.sample(rows, min(len(rows), rng.randint(1, 10))), key=lambda r: r["id"])
    # Some callbacks repeat the row's state (a duplicate): a change of nothing but timestamps.
    states = [rng.choice(("delivered", "read", "undelivered", r["state"])) for r in chosen]
    now = time.time()
    async with all_tenants_transaction(pools["tracker"]) as conn:
        await conn.execute(
            tracker_queries.UPDATE_RECIPIENTS,
            [r["id"] for r in chosen],
            states,
            [63016 if s == "undelivered" else None for s in states],
            [None for _ in states],
            [now if s in ("delivered", "read") else None for s in states],
            [now if s == "read" else None for s in states],
            [now if s == "undelivered" else None for s in states],
            [0 for _ in states],
            [None for _ in states],
        )


async def cancel(
    pools: dict[str, asyncpg.Pool], pool: asyncpg.Pool, campaign: Campaign, rng: random.Random
) -> None:
    async with tenant_transaction(pools["segmenter"], campaign.tenant_id) as conn:
        await conn.execute(segmenter_queries.CANCEL_LEFT_RECIPIENTS, campaign.tenant_id, campaign.id)


async def retry_failed(
    pools: dict[str, asyncpg.Pool], pool: asyncpg.Pool, campaign: Campaign, rng: random.Random
) -> None:
    async with tenant_transaction(pools["segmenter"], campaign.tenant_id) as conn:
        await conn.execute(segmenter_queries.REQUEUE_FAILED, campaign.tenant_id, campaign.id)


async def add_rows(
    pools: dict[str, asyncpg.Pool], pool: asyncpg.Pool, campaign: Campaign, rng: random.Random
) -> None:
    count = rng.randint(1, 15)
    start, campaign.next_phone = campaign.next_phone, campaign.next_phone + count
    await seed_recipients(
        pool, campaign.tenant_id, campaign.id, count, state="queued", with_sid=False, start=start
    )


async def delete_rows(
    pools: dict[str, asyncpg.Pool], pool: asyncpg.Pool, campaign: Campaign, rng: random.Random
) -> None:
    rows = await _ids(
        pool, campaign, ("queued", "sent", "delivered", "read", "failed", "cancelled", "sending")
    )
    chosen = [r["id"] for r in rng.sample(rows, min(len(rows), rng.randint(1, 5)))]
    async with tenant_transaction(pools["segmenter"], campaign.tenant_id) as conn:
        await conn.execute("DELETE FROM recipients WHERE id = ANY($1::bigint[])", chosen)


async def fold(
    pools: dict[str, asyncpg.Pool], pool: asyncpg.Pool, campaign: Campaign, rng: random.Random
) -> None:
    await fold_state_deltas(pools["tracker"], slice_rows=rng.choice((1, 3, 1000)))


STEPS = (
    claim,
    claim,
    settle,
    settle,
    callback,
    callback,
    cancel,
    retry_failed,
    add_rows,
    delete_rows,
    fold,
    fold,
)


async def _campaign(pool: asyncpg.Pool, tenant_id: uuid.UUID, rows: int) -> Campaign:
    campaign_id = await seed_campaign(pool, tenant_id)
    await seed_recipients(pool, tenant_id, campaign_id, rows, state="queued", with_sid=False, start=0)
    return Campaign(tenant_id, campaign_id, rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_kept_counts_equal_the_counted_rows_after_every_write_of_the_engine(
    pool: asyncpg.Pool, as_role: dict[str, asyncpg.Pool], seed: int
) -> None:
    rng = random.Random(seed)
    # Given two campaigns of one tenant and one of another tenant, all waiting to be sent
    tenant, other = await seed_tenant(pool), await seed_tenant(pool)
    campaigns = [
        await _campaign(pool, tenant.id, 40),
        await _campaign(pool, tenant.id, 25),
        await _campaign(pool, other.id, 30),
    ]
    await _assert_kept(pool, campaigns, "seeding")

    # When the engine's writes come in a random order, to random campaigns
    for n in range(60):
        step = rng.choice(STEPS)
        campaign = rng.choice(campaigns)
        await step(as_role, pool, campaign, rng)
        # Then the kept counts equal the counted rows after each of them
        await _assert_kept(pool, campaigns, f"step {n} ({step.__name__})")

    # And when a campaign and then a whole tenant are deleted, nothing of theirs stays once folded
    await pool.execute("DELETE FROM campaigns WHERE id = $1", campaigns[1].id)
    await _assert_kept(pool, campaigns, "deleting a campaign")
    await pool.execute("DELETE FROM tenants WHERE id = $1", other.id)
    await _assert_kept(pool, campaigns, "deleting a tenant")
    await fold_state_deltas(as_role["tracker"])
    await _assert_kept(pool, campaigns, "the last fold")
    for table in ("recipient_state_counts", "recipient_state_deltas"):
        left = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE campaign_id = $1 OR tenant_id = $2",
            campaigns[1].id,
            other.id,
        )
        assert left == 0, table


async def test_kept_counts_stay_exact_with_two_writers_and_a_fold_running_at_once(
    pool: asyncpg.Pool, as_role: dict[str, asyncpg.Pool]
) -> None:
    # Given one big campaign of a tenant and a small one of another, all waiting
    tenant, other = await seed_tenant(pool), await seed_tenant(pool)
    big = await _campaign(pool, tenant.id, 400)
    small = await _campaign(pool, other.id, 50)
    campaigns = [big, small]
    stop = asyncio.Event()
    failures: list[str] = []

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            step = rng.choice((claim, claim, settle, settle, callback, callback, retry_failed, add_rows))
            try:
                await step(as_role, pool, rng.choice(campaigns), rng)
            except asyncpg.DeadlockDetectedError as exc:
                failures.append(repr(exc))

    async def folder() -> None:
        while not stop.is_set():
            await fold_state_deltas(as_role["tracker"], slice_rows=50)
            await asyncio.sleep(0.01)

    # When two writers change the same campaigns' rows while the tracker folds
    tasks = [asyncio.create_task(writer(11)), asyncio.create_task(writer(12)), asyncio.create_task(folder())]
    try:
        # Then a reader sees the kept counts equal the counted rows at any moment (one snapshot)
        for _ in range(40):
            await _assert_kept(pool, campaigns, "concurrent writes")
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    # And no writer met a deadlock, and the counts agree once everything is folded
    assert failures == []
    await fold_state_deltas(as_role["tracker"])
    await _assert_kept(pool, campaigns, "the last fold")
    pending = await pool.fetchval(
        "SELECT count(*) FROM recipient_state_deltas WHERE campaign_id = ANY($1::uuid[])",
        [c.id for c in campaigns],
    )
    assert pending == 0
