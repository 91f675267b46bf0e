"""Snapshot a campaign's audience into ``recipients`` and publish it to the broker progressively.

The audience is inserted in phone-range chunks (INSERT … SELECT inside PostgreSQL, so the
segmenter holds no more than a chunk's ids) and each chunk is published, by the ids its insert
returns, as soon as it commits, so the first messages leave while a large snapshot is still being
written. A chunk commits with the cursor in ``campaigns`` (the last one with the snapshot's completion),
so a restarted segmenter carries on where the last one stopped without inserting a range twice,
after publishing what the last one committed but did not publish. ``published_upto`` moves past
each batch the broker confirmed, so a publication resumes after what went out; only a process
killed between a confirm and that write publishes a batch twice, and a duplicate broker message
only loses the claim race in the sender.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.segmenter import queries
from services.segmenter.audience import statistics
from services.segmenter.audience.model import Audience
from services.segmenter.audience.query import recipients_query
from shared import topology
from shared.broker import Publisher
from shared.db import OneTenant, tenant_transaction
from shared.events import RecipientBatch
from shared.logging import get_logger

log = get_logger(__name__)

# The first chunk is small so the first recipients reach the broker within a second or two.
FIRST_CHUNK_PHONES = 2_000
CHUNK_PHONES = 100_000


# As for the preview: no compilation or parallel workers for scans this short, and room to hash
# the members and sort the chunk in memory.
_CHUNK_SETTINGS = (
    "SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL work_mem = '64MB'"
)


def chunk_sizes() -> Any:
    yield FIRST_CHUNK_PHONES
    while True:
        yield CHUNK_PHONES


async def snapshot_chunk(
    conn: asyncpg.Connection,
    *,
    tenant_id: UUID,
    campaign_id: UUID,
    audience: Audience,
    now: datetime,
    tz: str,
    phone_after: str | None,
    phone_upto: str | None,
) -> list[int]:
    """Insert the recipients with a phone in ``phone_after < phone <= phone_upto``; return their ids."""
    sql, params = recipients_query(
        audience, tenant_id=tenant_id, now=now, tz=tz, phone_after=phone_after, phone_upto=phone_upto
    )
    insert = queries.SNAPSHOT_CHUNK.format(
        audience=sql, tenant=f"${len(params) + 1}", campaign=f"${len(params) + 2}"
    )
    # A statement of its own for every chunk, so that it is planned for this chunk's values: one
    # reused from the statement cache may get a generic plan, blind to how much a range or window
    # holds. (plan_cache_mode would also re-plan the foreign-key check for every row inserted.)
    statement = await conn.prepare(insert)
    return [row["id"] for row in await statement.fetch(*params, tenant_id, campaign_id)]


async def publish_ids(publisher: Publisher, tenant_id: UUID, campaign_id: UUID, ids: list[int]) -> None:
    event = RecipientBatch(tenant_id=tenant_id, campaign_id=campaign_id, recipient_ids=ids)
    await publisher.publish(topology.RECIPIENTS_EXCHANGE, str(tenant_id), event)


class CampaignPublisher:
    """Publishes a campaign's rows in id order from ``campaigns.published_upto``."""

    def __init__(self, pool: asyncpg.Pool, publisher: Publisher, batch_size: int) -> None:
        self._pool = pool
        self._publisher = publisher
        self._batch_size = batch_size

    async def publish_pending(self, tenant_id: UUID, campaign_id: UUID) -> int:
        """Publish every unpublished row; returns how many were published."""
        cursor = await OneTenant(self._pool).fetchval(
            tenant_id,
            "SELECT published_upto FROM campaigns WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            campaign_id,
        )
        published = 0
        while True:
            rows = await OneTenant(self._pool).fetch(
                tenant_id, queries.NEXT_UNPUBLISHED, campaign_id, cursor, self._batch_size * 8
            )
            if not rows:
                return published
            ids = [row["id"] for row in rows]
            await self._publish_and_advance(tenant_id, campaign_id, ids)
            cursor = ids[-1]
            published += len(ids)

    async def publish_inserted(self, tenant_id: UUID, campaign_id: UUID, ids: list[int]) -> None:
        """Publish rows just inserted, by the ids the insert returned: reading them back would
        scan the whole campaign's rows for each batch while its statistics still say it has none."""
        if not ids:
            return
        await self._publish_and_advance(tenant_id, campaign_id, ids)

    async def _publish_and_advance(self, tenant_id: UUID, campaign_id: UUID, ids: list[int]) -> None:
        """Publish ``ids`` (ascending) in batches and move ``published_upto`` past every batch the
        broker confirmed before the first one it did not: a publication that fails half-way is
        resumed after what went out, not from its start."""
        size = self._batch_size
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        # Confirms are awaited together: one round trip per group instead of one per batch.
        tasks = [
            asyncio.ensure_future(publish_ids(self._publisher, tenant_id, campaign_id, batch))
            for batch in batches
        ]
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            # Also when cancelled (the runner stopping): what was confirmed stays published.
            confirmed: list[int] | None = None
            failure: BaseException | None = None
            for batch, task in zip(batches, tasks, strict=True):
                if not task.done() or task.cancelled():
                    break
                if task.exception() is not None:
                    failure = task.exception()
                    break
                confirmed = batch
            for task in tasks:
                task.cancel()
            if confirmed is not None:
                await asyncio.shield(
                    OneTenant(self._pool).execute(
                        tenant_id, queries.SET_PUBLISHED_UPTO, tenant_id, campaign_id, confirmed[-1]
                    )
                )
        if failure is not None:
            raise failure

    async def republish(self, tenant_id: UUID, campaign_id: UUID) -> int:
        """Publish again the rows the broker may no longer hold (after a pause, or a lost message)."""
        upto = await OneTenant(self._pool).fetchval(
            tenant_id,
            "SELECT published_upto FROM campaigns WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            campaign_id,
        )
        cursor, count = 0, 0
        while True:
            rows = await OneTenant(self._pool).fetch(
                tenant_id, queries.REPUBLISHABLE, campaign_id, cursor, upto, self._batch_size * 8
            )
            if not rows:
                return count
            ids = [row["id"] for row in rows]
            await self._publish_in_batches(tenant_id, campaign_id, ids)
            cursor = ids[-1]
            count += len(ids)

    async def _publish_in_batches(self, tenant_id: UUID, campaign_id: UUID, ids: list[int]) -> None:
        size = self._batch_size
        await asyncio.gather(
            *(
                publish_ids(self._publisher, tenant_id, campaign_id, ids[i : i + size])
                for i in range(0, len(ids), size)
            )
        )


async def run_snapshot(
    pool: asyncpg.Pool,
    campaign_publisher: CampaignPublisher,
    *,
    tenant_id: UUID,
    campaign_id: UUID,
    now: datetime | None = None,
) -> int:
    """Snapshot (resuming from the stored cursor) and publish as each chunk commits; return the total."""
    row = await OneTenant(pool).fetchrow(
        tenant_id,
        "SELECT c.kind, c.audience, c.snapshot_cursor, c.snapshot_completed_at, c.started_at, t.timezone"
        " FROM campaigns c JOIN tenants t ON t.id = c.tenant_id WHERE c.tenant_id = $1 AND c.id = $2",
        tenant_id,
        campaign_id,
    )
    if row is None:
        return 0
    # Test and manual sends insert their recipients directly: there is no audience to select.
    if row["snapshot_completed_at"] is None and row["kind"] == "campaign":
        await _snapshot_audience(
            pool,
            campaign_publisher,
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            audience=Audience.model_validate(row["audience"]),
            # The campaign's clock is its start time, so a resumed snapshot uses the same windows.
            now=now or row["started_at"] or datetime.now(UTC),
            tz=row["timezone"],
            cursor=row["snapshot_cursor"],
        )
    elif row["snapshot_completed_at"] is None:
        await OneTenant(pool).execute(tenant_id, queries.FINISH_SNAPSHOT, tenant_id, campaign_id)
    await campaign_publisher.publish_pending(tenant_id, campaign_id)
    return int(
        await OneTenant(pool).fetchval(tenant_id, "SELECT total FROM campaigns WHERE id = $1", campaign_id)
    )


async def _snapshot_audience(
    pool: asyncpg.Pool,
    campaign_publisher: CampaignPublisher,
    *,
    tenant_id: UUID,
    campaign_id: UUID,
    audience: Audience,
    now: datetime,
    tz: str,
    cursor: str | None,
) -> None:
    if cursor is not None:
        # A previous runner may have stopped between a chunk's commit and its publication.
        await campaign_publisher.publish_pending(tenant_id, campaign_id)
    # As for the preview: chunks planned on statistics from before a bulk load can be slow.
    await statistics.STATISTICS.before_read(pool)
    sizes = chunk_sizes()
    # A chunk's rows are published while the next chunk is inserted, so that the broker's work
    # and the database's writing overlap instead of taking turns.
    publishing: asyncio.Task[None] | None = None
    try:
        while True:
            upto = await OneTenant(pool).fetchval(
                tenant_id, queries.NEXT_PHONE_BOUNDARY, tenant_id, cursor, next(sizes) - 1
            )
            async with tenant_transaction(pool, tenant_id) as conn:
                await conn.execute(_CHUNK_SETTINGS)
                ids = await snapshot_chunk(
                    conn,
                    tenant_id=tenant_id,
                    campaign_id=campaign_id,
                    audience=audience,
                    now=now,
                    tz=tz,
                    phone_after=cursor,
                    phone_upto=upto,
                )
                if upto is None:
                    # The last chunk finishes the snapshot in its own transaction: a NULL cursor
                    # would otherwise read as "not started" to a runner resuming after a failure.
                    await conn.execute(queries.FINISH_SNAPSHOT, tenant_id, campaign_id)
                else:
                    await conn.execute(queries.SET_SNAPSHOT_CURSOR, tenant_id, campaign_id, upto)
            log.debug("snapshot chunk", campaign_id=str(campaign_id), inserted=len(ids), upto=upto)
            # One publication at a time keeps the rows going out in id order.
            if publishing is not None:
                await publishing
            publishing = asyncio.create_task(campaign_publisher.publish_inserted(tenant_id, campaign_id, ids))
            if upto is None:
                break
            cursor = upto
        await publishing
    finally:
        if publishing is not None and not publishing.done():
            # Let the chunk in publication finish (it fails on its own if the broker is gone), so
            # what the broker confirmed is recorded and not published again on resumption.
            await asyncio.gather(publishing, return_exceptions=True)
