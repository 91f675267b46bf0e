"""The outbound webhook delivery worker of a tracker: claims due deliveries from PostgreSQL,
attempts each one under a deadline, records the answer, schedules retries along the tiers and
disables an endpoint that keeps failing.

Bounds, so one endpoint or tenant cannot hold the workers: at most ``webhook_concurrency``
attempts in flight per tracker; per endpoint and per tenant at most their own bound across every
tracker (an endpoint is locked while its deliveries are claimed, and the in-flight count comes
from the rows themselves); free slots go round-robin to the tenants with the fewest in flight.
A hanging endpoint thus holds its own few slots for one deadline at a time, nothing more.

Everything is in PostgreSQL: a tracker that stops loses nothing (its claimed deliveries are due
again when their lease ends), and every tracker can run the worker beside the others.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg

from services.tracker import outbound_queries as queries
from services.tracker.outbound_client import AttemptResult, WebhookClient
from services.tracker.outbound_fanout import FEED_BATCH, feed_once
from services.tracker.outbound_policy import (
    DueEndpoint,
    is_success,
    retry_delay_s,
    share_slots,
    should_disable,
)
from shared import audit
from shared.crypto import SecretBox
from shared.db import AllTenants, all_tenants_transaction, tenant_transaction
from shared.logging import get_logger
from shared.metrics import OUTBOUND_WEBHOOK_ATTEMPTS, OUTBOUND_WEBHOOK_DISABLED, OUTBOUND_WEBHOOK_SECONDS
from shared.settings import Settings

log = get_logger(__name__)

ACTOR = "system:webhooks"
# A claimed delivery's lease outlasts its attempt's deadline by this margin.
LEASE_MARGIN_S = 30.0
# Expired leases are looked for every this many passes.
LEASE_CHECK_EVERY = 20
# Pool connections the worker uses at once (claims and recording answers), so a burst of finished
# attempts never queues the tracker's status-callback batches behind it.
DATABASE_SHARE = 2


class DeliveryWorker:
    def __init__(self, pool: asyncpg.Pool, box: SecretBox, settings: Settings, client: WebhookClient) -> None:
        self._pool = pool
        self._box = box
        self._settings = settings
        self._client = client
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._database = asyncio.Semaphore(DATABASE_SHARE)

    async def run(self) -> None:
        """Claim and attempt due deliveries until cancelled."""
        passes = 0
        try:
            while True:
                free = self._settings.webhook_concurrency - len(self._in_flight)
                try:
                    async with self._database:
                        if passes % LEASE_CHECK_EVERY == 0:
                            await AllTenants(self._pool).execute(queries.EXPIRE_LEASES)
                        claimed = await self._claim(free) if free > 0 else []
                except (asyncpg.PostgresError, OSError) as exc:
                    log.warning("webhook claim failed", error=repr(exc))
                    claimed = []
                passes += 1
                for delivery in claimed:
                    task = asyncio.create_task(self._attempt(delivery))
                    self._in_flight.add(task)
                    task.add_done_callback(self._done)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._settings.webhook_poll_s)
                except TimeoutError:
                    pass
        finally:
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook attempt failed unexpectedly", error=repr(task.exception()))

    async def _claim(self, free: int) -> list[asyncpg.Record]:
        settings = self._settings
        # Due deliveries of every tenant, shared out fairly: a cross-tenant transaction.
        async with all_tenants_transaction(self._pool) as conn:
            due = [
                DueEndpoint(row["id"], row["tenant_id"], row["in_flight"], row["due"])
                for row in await conn.fetch(
                    queries.SELECT_DUE_ENDPOINTS, settings.webhook_endpoint_concurrency
                )
            ]
            if not due:
                return []
            tenant_rows = await conn.fetch(queries.SELECT_TENANT_IN_FLIGHT, list({e.tenant_id for e in due}))
            shares = share_slots(
                due,
                {row["tenant_id"]: row["in_flight"] for row in tenant_rows},
                free=free,
                endpoint_limit=settings.webhook_endpoint_concurrency,
                tenant_limit=settings.webhook_tenant_concurrency,
            )
            if not shares:
                return []
            return list(
                await conn.fetch(
                    queries.CLAIM,
                    list(shares),
                    list(shares.values()),
                    settings.webhook_timeout_s + LEASE_MARGIN_S,
                )
            )

    async def _attempt(self, delivery: asyncpg.Record) -> None:
        try:
            secret = self._box.decrypt(delivery["secret_enc"])
        except ValueError as exc:
            result = AttemptResult(None, None, str(exc), 0)
        else:
            result = await self._client.post(
                delivery["url"],
                delivery["body"].encode(),
                secret=secret,
                event_id=delivery["event_id"],
                event_type=delivery["event_type"],
                delivery_id=delivery["id"],
            )
        OUTBOUND_WEBHOOK_SECONDS.observe(result.duration_ms / 1000)
        await self._record(delivery, result)
        self._wake.set()

    async def _record(self, delivery: asyncpg.Record, result: AttemptResult) -> None:
        settings = self._settings
        attempts: int = delivery["attempts"]
        succeeded = is_success(result.status_code)
        error = result.error
        if not succeeded and error is None:
            error = f"answered {result.status_code}"
        delay = None if succeeded else retry_delay_s(attempts, settings.webhook_retry_tiers_s)
        state = "succeeded" if succeeded else ("pending" if delay is not None else "failed")
        outcome = "succeeded" if succeeded else ("retry" if delay is not None else "failed")
        OUTBOUND_WEBHOOK_ATTEMPTS.labels(str(delivery["tenant_id"]), outcome).inc()
        async with self._database, tenant_transaction(self._pool, delivery["tenant_id"]) as conn:
            await conn.execute(
                queries.INSERT_ATTEMPT,
                delivery["id"],
                attempts,
                result.duration_ms,
                result.status_code,
                result.response,
                error,
            )
            await conn.execute(
                queries.RECORD_OUTCOME,
                delivery["id"],
                state,
                delay or 0.0,
                result.status_code,
                result.response,
                error,
            )
            if succeeded:
                await conn.execute(queries.ENDPOINT_SUCCEEDED, delivery["endpoint_id"])
                return
            endpoint = await conn.fetchrow(queries.ENDPOINT_FAILED, delivery["endpoint_id"])
            if endpoint is not None and endpoint["enabled"]:
                await self._disable_if_failing(conn, delivery["endpoint_id"], endpoint)

    async def _disable_if_failing(
        self, conn: asyncpg.Connection, endpoint_id: Any, endpoint: asyncpg.Record
    ) -> None:
        settings = self._settings
        failing_since: datetime = endpoint["failing_since"]
        if not should_disable(
            consecutive_failures=endpoint["consecutive_failures"],
            failing_since=failing_since,
            now=endpoint["now"],
            after_s=settings.webhook_disable_after_s,
            after_failures=settings.webhook_disable_after_failures,
        ):
            return
        reason = (
            f"every attempt failed since {failing_since.isoformat(timespec='seconds')}"
            f" ({endpoint['consecutive_failures']} in a row)"
        )
        if await conn.fetchval(queries.DISABLE_ENDPOINT, endpoint_id, reason) is None:
            return
        await audit.record(
            conn,
            actor=ACTOR,
            action="webhook_endpoint.disabled",
            tenant_id=endpoint["tenant_id"],
            detail={"endpoint_id": endpoint_id, "reason": reason},
        )
        OUTBOUND_WEBHOOK_DISABLED.labels(str(endpoint["tenant_id"])).inc()
        log.warning(
            "webhook endpoint disabled", tenant_id=str(endpoint["tenant_id"]), endpoint_id=str(endpoint_id)
        )


async def run_feed(pool: asyncpg.Pool, settings: Settings) -> None:
    """Turn new message events into deliveries until cancelled: a full batch is followed at once
    by the next, otherwise every poll interval. A failing pass (the database restarting) is
    logged and the next comes on time."""
    while True:
        started = time.monotonic()
        try:
            read = await feed_once(pool, settle_s=settings.webhook_event_settle_s)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("webhook feed pass failed", error=repr(exc))
            read = 0
        if read < FEED_BATCH:
            await asyncio.sleep(max(0.0, settings.webhook_poll_s - (time.monotonic() - started)))
