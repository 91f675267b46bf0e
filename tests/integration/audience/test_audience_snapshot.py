"""The snapshot in phone-range chunks: every recipient inserted once and published once, also when
a segmenter stopped between a chunk's commit and its publication."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import orjson
import pytest
from audience_data import Dataset, seed

from services.segmenter import queries, snapshot
from services.segmenter.audience.model import Audience
from shared import topology
from shared.broker import Publisher, connect
from tests.support import IsolatedEnvironment, drain_queue

NOW = datetime(2026, 3, 20, 12, tzinfo=ZoneInfo("America/New_York"))
# Eleven customers, two of them sharing a number, one without a valid one: nine recipients.
CUSTOMERS: dict[str, str | None] = {f"c{n}": f"+1415555{n:04d}" for n in range(9)}
CUSTOMERS |= {"c9": "+14155550004", "no_phone": None}


@pytest.fixture(scope="module")
async def broker(isolated_env: IsolatedEnvironment) -> AsyncIterator[Publisher]:
    connection = await connect(isolated_env.amqp_url, retry_s=10)
    publisher = await Publisher.open(connection, timeout_s=5)
    await topology.declare_all(publisher.channel, [5])
    try:
        yield publisher
    finally:
        await connection.close()


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "FIRST_CHUNK_PHONES", 2)
    monkeypatch.setattr(snapshot, "CHUNK_PHONES", 3)


async def running_campaign(pool: asyncpg.Pool, broker: Publisher) -> tuple[UUID, UUID]:
    tenant_id = await seed(pool, Dataset(customers=CUSTOMERS))
    await topology.declare_tenant(broker.channel, str(tenant_id))
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template, state, started_at)"
        " VALUES ($1, $2, 'c', $3, '{}', 'running', $4)",
        campaign_id,
        tenant_id,
        Audience(segment="all_customers").model_dump(mode="json"),
        NOW,
    )
    return tenant_id, campaign_id


async def published_ids(broker: Publisher, tenant_id: UUID) -> list[int]:
    ids: list[int] = []
    for message in await drain_queue(broker.channel, topology.dispatch_queue_name(str(tenant_id))):
        ids.extend(orjson.loads(message.body)["recipient_ids"])
    return ids


async def recipient_ids(pool: asyncpg.Pool, campaign_id: UUID) -> list[int]:
    rows = await pool.fetch("SELECT id FROM recipients WHERE campaign_id = $1 ORDER BY id", campaign_id)
    return [row["id"] for row in rows]


async def test_a_snapshot_in_several_chunks_inserts_and_publishes_every_recipient_once(
    pool: asyncpg.Pool, broker: Publisher
) -> None:
    # Given a running campaign of nine recipients, snapshotted two, then three numbers at a time
    tenant_id, campaign_id = await running_campaign(pool, broker)
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
    tenant_id, campaign_id = await running_campaign(pool, broker)
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
