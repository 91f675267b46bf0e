"""The delivery worker on the real database with a real receiver: a delivery whose tracker stopped
mid-attempt is made again once its lease ends, and a tracker that restarts loses nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web

from services.tracker.outbound_client import WebhookClient
from services.tracker.outbound_worker import DeliveryWorker
from shared.crypto import SecretBox
from shared.settings import DEVELOPMENT_ENCRYPTION_KEY, Settings
from shared.webhook_signature import SIGNATURE_HEADER, verify
from tests.integration.tracker.helpers import eventually, forget_seeded_tenants, seed_tenant
from tests.support import free_port

SECRET = "whsec_worker_test"
BOX = SecretBox([DEVELOPMENT_ENCRYPTION_KEY])


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    async def take(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", take)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
async def clean(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await pool.execute("DELETE FROM webhook_endpoints")
    await forget_seeded_tenants(pool)


async def _run_worker(pool: asyncpg.Pool) -> tuple[asyncio.Task[None], WebhookClient]:
    settings = Settings(webhook_poll_s=0.05, webhook_retry_tiers_s=[1.0])
    client = WebhookClient(max_connections=4, timeout_s=5, max_response_bytes=65536, public_only=False)
    worker = DeliveryWorker(pool, BOX, settings, client)
    return asyncio.create_task(worker.run()), client


async def test_a_delivery_interrupted_by_a_stopped_tracker_is_made_after_its_lease(
    pool: asyncpg.Pool, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    # Given a delivery a tracker claimed and then stopped in the middle of (its lease has ended)
    url, received = receiver
    tenant = await seed_tenant(pool)
    endpoint_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret_enc)"
        " VALUES ($1, $2, $3, '{campaign.started}', $4)",
        endpoint_id,
        tenant.id,
        url,
        BOX.encrypt(SECRET),
    )
    delivery_id = await pool.fetchval(
        "INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, body, state, attempts,"
        " lease_until) VALUES ($1, $2, 'evt_x', 'campaign.started', '{\"id\":\"evt_x\"}', 'delivering', 1,"
        " now() - interval '1 second') RETURNING id",
        tenant.id,
        endpoint_id,
    )

    # When a tracker's worker starts
    task, client = await _run_worker(pool)
    try:
        state = await eventually(
            lambda: pool.fetchval(
                "SELECT state FROM webhook_deliveries WHERE id = $1 AND state = 'succeeded'", delivery_id
            ),
            timeout_s=30,
            every_s=0.1,
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()

    # Then the delivery is made, signed, and counts its second attempt
    assert state == "succeeded"
    [(headers, body)] = received
    verify(SECRET, headers[SIGNATURE_HEADER], body, now=time.time())
    row = await pool.fetchrow(
        "SELECT attempts, last_status_code FROM webhook_deliveries WHERE id = $1", delivery_id
    )
    assert (row["attempts"], row["last_status_code"]) == (2, 200)
