"""Background work of running campaigns: snapshot and publication tasks, completion checks.

A campaign's snapshot/publication runs in one segmenter at a time: the runner holds a
transaction-scoped advisory lock keyed by the campaign id in a transaction kept open on a
connection of its own while it works (the work itself runs on other connections). A lock tied to
a transaction is released with it — at the end, or when the process dies and its connection
closes — and a transaction-mode pooler keeps the transaction on one server connection, which a
session lock would not get (its unlock could reach another server connection and leave the lock
held). The transaction writes nothing and holds no snapshot between statements. The monitor loop
picks up campaigns whose runner died with its process.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg

from services.segmenter import queries
from services.segmenter.campaigns import Lifecycle
from services.segmenter.snapshot import CampaignPublisher, run_snapshot
from shared.db import AllTenants, OneTenant
from shared.logging import get_logger

log = get_logger(__name__)
# Completed campaigns run again per monitor pass, at most.
REOPEN_BATCH = 100


def campaign_lock_key(campaign_id: UUID) -> int:
    # Advisory locks take a signed 64-bit key.
    return int.from_bytes(campaign_id.bytes[:8], "big", signed=True)


class CampaignRunner:
    def __init__(
        self, pool: asyncpg.Pool, campaign_publisher: CampaignPublisher, *, concurrency: int = 3
    ) -> None:
        self._pool = pool
        self._publisher = campaign_publisher
        # A runner holds one pooled connection for its lock and uses one more at a time; bounding
        # the runners keeps connections free for the API however many campaigns are running.
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[UUID, asyncio.Task[None]] = {}
        self._republish: set[UUID] = set()

    def launch(self, tenant_id: UUID, campaign_id: UUID, *, republish: bool = False) -> None:
        if republish:
            self._republish.add(campaign_id)
        task = self._tasks.get(campaign_id)
        if task is not None and not task.done():
            return
        task = asyncio.create_task(self._run(tenant_id, campaign_id), name=f"campaign-{campaign_id}")
        self._tasks[campaign_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(campaign_id, None))

    def running(self, campaign_id: UUID) -> bool:
        task = self._tasks.get(campaign_id)
        return task is not None and not task.done()

    async def _run(self, tenant_id: UUID, campaign_id: UUID) -> None:
        async with self._slots, self._pool.acquire() as lock_conn, lock_conn.transaction():
            if not await lock_conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)", campaign_lock_key(campaign_id)
            ):
                return
            try:
                while True:
                    if campaign_id in self._republish:
                        self._republish.discard(campaign_id)
                        count = await self._publisher.republish(tenant_id, campaign_id)
                        log.info("recipients republished", campaign_id=str(campaign_id), count=count)
                    await run_snapshot(
                        self._pool, self._publisher, tenant_id=tenant_id, campaign_id=campaign_id
                    )
                    if campaign_id not in self._republish:
                        return
            except Exception:
                log.exception("campaign runner failed; the monitor will retry", campaign_id=str(campaign_id))

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


async def monitor_loop(
    pool: asyncpg.Pool, runner: CampaignRunner, lifecycle: Lifecycle, interval_s: float
) -> None:
    """Complete campaigns with nothing left to settle; run again those a refusal reported after
    their completion sent recipients back to wait; restart runners a dead process left behind."""
    while True:
        try:
            for row in await AllTenants(pool).fetch(queries.COMPLETED_WITH_REFUSED_WAITING, REOPEN_BATCH):
                await lifecycle.reopen_if_refused(row["tenant_id"], row["id"])
            # The campaign monitor spans tenants: its listing runs as the cross-tenant role.
            for row in await AllTenants(pool).fetch(queries.RUNNING_CAMPAIGNS):
                tenant_id, campaign_id = row["tenant_id"], row["id"]
                if runner.running(campaign_id):
                    continue
                if row["snapshot_completed_at"] is None or await OneTenant(pool).fetchval(
                    tenant_id, queries.HAS_UNPUBLISHED, campaign_id, row["published_upto"]
                ):
                    runner.launch(tenant_id, campaign_id)
                    continue
                await lifecycle.complete_if_done(tenant_id, campaign_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("campaign monitor pass failed", error=repr(exc))
        await asyncio.sleep(interval_s)
