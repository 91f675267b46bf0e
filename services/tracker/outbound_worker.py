"""The outbound webhook delivery worker of a tracker: claims due deliveries from PostgreSQL,
attempts each one under a deadline, records the answers, schedules retries along the tiers and
disables an endpoint that keeps failing.

Bounds, so one endpoint or tenant cannot hold the workers: at most ``webhook_concurrency``
attempts in flight per tracker; per endpoint and per tenant at most their own bound across every
tracker (an endpoint is locked while its deliveries are claimed, and the in-flight count comes
from the rows themselves); free slots go round-robin to the tenants with the fewest in flight.
A hanging endpoint thus holds its own few slots for one deadline at a time, nothing more.

Answers are recorded in batches (one transaction per tenant for the attempts that ended meanwhile), and
the worker uses at most ``DATABASE_SHARE`` of the tracker's pool connections, so deliveries never
queue the tracker's status-callback batches behind them.

Everything is in PostgreSQL: a tracker that stops loses nothing (its claimed deliveries are due
again when their lease ends), and every tracker can run the worker beside the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

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
# Pool connections the worker uses at once (claims and recording answers).
DATABASE_SHARE = 2


@dataclass(frozen=True)
class Finished:
    """An attempt that ended, with what is recorded for it."""

    delivery_id: int
    tenant_id: UUID
    endpoint_id: UUID
    attempt: int
    result: AttemptResult
    state: str  # succeeded, pending (retried after delay_s) or failed
    delay_s: float
    error: str | None


def outcome(delivery: asyncpg.Record, result: AttemptResult, tiers_s: Sequence[float]) -> Finished:
    attempts: int = delivery["attempts"]
    succeeded = is_success(result.status_code)
    error = result.error if succeeded or result.error else f"answered {result.status_code}"
    delay = None if succeeded else retry_delay_s(attempts, tiers_s)
    state = "succeeded" if succeeded else ("pending" if delay is not None else "failed")
    return Finished(
        delivery["id"],
        delivery["tenant_id"],
        delivery["endpoint_id"],
        attempts,
        result,
        state,
        delay or 0.0,
        error,
    )


class DeliveryWorker:
    def __init__(self, pool: asyncpg.Pool, box: SecretBox, settings: Settings, client: WebhookClient) -> None:
        self._pool = pool
        self._box = box
        self._settings = settings
        self._client = client
        self._in_flight: set[asyncio.Task[None]] = set()
        self._finished: list[Finished] = []
        self._wake = asyncio.Event()
        self._to_record = asyncio.Event()
        self._database = asyncio.Semaphore(DATABASE_SHARE)
        # Decrypted secrets by their ciphertext: a secret changes only with its endpoint.
        self._secrets: dict[str, str] = {}

    async def run(self) -> None:
        """Claim and attempt due deliveries until cancelled."""
        recorder = asyncio.create_task(self._record_loop())
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
            for task in [*self._in_flight, recorder]:
                task.cancel()
            await asyncio.gather(*self._in_flight, recorder, return_exceptions=True)

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

    def _secret(self, encrypted: str) -> str:
        secret = self._secrets.get(encrypted)
        if secret is None:
            if len(self._secrets) >= 10_000:
                self._secrets.clear()
            secret = self._secrets[encrypted] = self._box.decrypt(encrypted)
        return secret

    async def _attempt(self, delivery: asyncpg.Record) -> None:
        try:
            secret = self._secret(delivery["secret_enc"])
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
        finished = outcome(delivery, result, self._settings.webhook_retry_tiers_s)
        label = {"succeeded": "succeeded", "pending": "retry"}.get(finished.state, "failed")
        OUTBOUND_WEBHOOK_ATTEMPTS.labels(str(finished.tenant_id), label).inc()
        self._finished.append(finished)
        self._to_record.set()

    async def _record_loop(self) -> None:
        while True:
            await self._to_record.wait()
            self._to_record.clear()
            batch, self._finished = self._finished, []
            try:
                async with self._database:
                    await self._record(batch)
            except Exception as exc:
                # Left in ``delivering``: due again when their lease ends (the database restarting,
                # usually); the recorder goes on with the next answers.
                log.warning("webhook answers not recorded", error=repr(exc), count=len(batch))
            self._wake.set()

    async def _record(self, batch: list[Finished]) -> None:
        """Record the answers of a batch: one transaction per tenant in it."""
        by_tenant: dict[UUID, list[Finished]] = {}
        for item in batch:
            by_tenant.setdefault(item.tenant_id, []).append(item)
        for tenant_id, items in by_tenant.items():
            await self._record_tenant(tenant_id, items)

    async def _record_tenant(self, tenant_id: UUID, batch: list[Finished]) -> None:
        # Per endpoint, in the order attempts ended: whether one succeeded, and the failures after
        # the last success (those continue or start the endpoint's run of failures).
        runs: dict[UUID, tuple[bool, int]] = {}
        for item in batch:
            reset, failures = runs.get(item.endpoint_id, (False, 0))
            runs[item.endpoint_id] = (True, 0) if item.state == "succeeded" else (reset, failures + 1)
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.executemany(
                queries.INSERT_ATTEMPT,
                [
                    (
                        i.delivery_id,
                        i.attempt,
                        i.result.duration_ms,
                        i.result.status_code,
                        i.result.response,
                        i.error,
                    )
                    for i in batch
                ],
            )
            await conn.executemany(
                queries.RECORD_OUTCOME,
                [
                    (i.delivery_id, i.state, i.delay_s, i.result.status_code, i.result.response, i.error)
                    for i in batch
                ],
            )
            # Endpoints in id order, as claims lock them, so two transactions never wait on each other.
            for endpoint_id in sorted(runs):
                reset, failures = runs[endpoint_id]
                if reset:
                    await conn.execute(queries.ENDPOINT_SUCCEEDED, endpoint_id)
                if failures:
                    endpoint = await conn.fetchrow(queries.ENDPOINT_FAILED, endpoint_id, failures)
                    if endpoint is not None and endpoint["enabled"]:
                        await self._disable_if_failing(conn, endpoint_id, endpoint)

    async def _disable_if_failing(
        self, conn: asyncpg.Connection, endpoint_id: Any, endpoint: asyncpg.Record
    ) -> None:
        settings = self._settings
        if not should_disable(
            consecutive_failures=endpoint["consecutive_failures"],
            failing_since=endpoint["failing_since"],
            now=endpoint["now"],
            after_s=settings.webhook_disable_after_s,
            after_failures=settings.webhook_disable_after_failures,
        ):
            return
        reason = (
            f"every attempt failed since {endpoint['failing_since'].isoformat(timespec='seconds')}"
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
