"""The snapshot in phone-range chunks: every recipient inserted once and published once, also when
a segmenter stopped between a chunk's commit and its publication."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import pytest
from snapshot_campaigns import NOW, published_ids, running_campaign

from services.segmenter import queries, snapshot
from services.segmenter.audience.model import Audience
from shared.broker import Publisher

# Eleven customers, two of them sharing a number, one without a valid one: nine recipients.
CUSTOMERS: dict[str, str | None] = {f"c{n}": f"+1415555{n:04d}" for n in range(9)}
CUSTOMERS |= {"c9": "+14155550004", "no_phone": None}

pytestmark = pytest.mark.usefixtures("small_chunks")


async def recipient_ids(pool: asyncpg.Pool, campaign_id: UUID) -> list[int]:
    rows = await pool.fetch("SELECT id FROM recipients WHERE campaign_id = $1 ORDER BY id", campaign_id)
    return [row["id"] for row in rows]


async def test_a_snapshot_in_several_chunks_inserts_and_publishes_every_recipient_once(
    pool: asyncpg.Pool, broker: Publisher
) -> None:
    # Given a running campaign of nine recipients, snapshotted two, then three numbers at a time
    tenant_id, campaign_id = await running_campaign(pool, broker, CUSTOMERS)
    campaign_publisher = snapshot.CampaignPublisher(pool, broker, batch_size=2)

    # When the snapshot runs
    total = await snapshot.run_snapshot(
        pool, campaign_publisher, tenant_id=tenant_id, campaign_id=campaign_id
    )

    # Then each number got one recipient, and each recipient was published once
    inserted = await recipient_ids(pool, campaign_id)
    assert total == len(inserted) == 9
    assert sorted(await published_ids(broker, tenant_id)) == inserted
    published_upto = await pool.fetchval("SELECT published_upto FROM campaigns WHERE id = $1", campaign_id)
    assert published_upto == max(inserted)


async def test_a_resumed_snapshot_publishes_what_a_stopped_segmenter_committed_but_had_not_published(
    pool: asyncpg.Pool, broker: Publisher
) -> None:
    # Given a campaign whose first chunk a segmenter committed, with its cursor, before it stopped
    tenant_id, campaign_id = await running_campaign(pool, broker, CUSTOMERS)
    upto = await pool.fetchval(queries.NEXT_PHONE_BOUNDARY, tenant_id, None, 2)
    async with pool.acquire() as conn, conn.transaction():
        first = await snapshot.snapshot_chunk(
            conn,
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            audience=Audience(segment="all_customers"),
            now=NOW,
            tz="America/New_York",
            phone_after=None,
            phone_upto=upto,
        )
        await conn.execute(queries.SET_SNAPSHOT_CURSOR, tenant_id, campaign_id, upto)

    # When another segmenter runs the campaign
    campaign_publisher = snapshot.CampaignPublisher(pool, broker, batch_size=2)
    await snapshot.run_snapshot(pool, campaign_publisher, tenant_id=tenant_id, campaign_id=campaign_id)

    # Then the first chunk's recipients were not inserted again, and every recipient was published once
    inserted = await recipient_ids(pool, campaign_id)
    assert len(first) == 3
    assert set(first) < set(inserted)
    assert len(inserted) == 9
    assert sorted(await published_ids(broker, tenant_id)) == inserted
