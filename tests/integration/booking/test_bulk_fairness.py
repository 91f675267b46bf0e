"""Bulk work shares the segmenter: one bulk request per tenant at a time, a large import's row
work leaves the event loop free for other tenants' requests, and small writes and the database
connections never wait for the bulk workers."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg
import httpx
from booking_api import new_tenant
from fastapi import FastAPI

from services.segmenter import routes_booking, routes_suppressions, routes_tenants
from services.segmenter.booking.consumer import apply_event
from services.segmenter.bulk import GUARD
from services.segmenter.workers import ON_LOOP_AT_MOST, off_loop
from shared.db import create_pool
from shared.events import BookingCustomerUpserted
from shared.http import install_common
from shared.settings import get_settings
from tests.support import IsolatedEnvironment

IMPORT_SIZE = 20_000


def segmenter(pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI()
    install_common(app, {})
    app.state.pool = pool
    app.state.settings = get_settings()
    for module in (routes_booking, routes_suppressions, routes_tenants):
        app.include_router(module.router)
    return app


def api(app: FastAPI, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://segmenter",
        headers={"X-API-Key": key},
        timeout=120,
    )


def numbers(start: int, count: int) -> list[str]:
    return [f"+1415{start + index:07d}" for index in range(count)]


@asynccontextmanager
async def bulk_workers_busy() -> AsyncIterator[None]:
    """Both bulk workers held (as by two other tenants' large imports) until the block ends."""
    release = threading.Event()
    held = [asyncio.create_task(off_loop(release.wait)) for _ in range(2)]
    try:
        yield
    finally:
        release.set()
        await asyncio.gather(*held)


async def suppressed(pool: asyncpg.Pool, tenant_id: UUID) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM suppressions WHERE tenant_id = $1", tenant_id)
    return count


async def test_a_tenants_second_bulk_request_meanwhile_gets_409_naming_the_reason_and_others_go_on(
    pool: asyncpg.Pool,
) -> None:
    # Given two tenants and one segmenter
    app = segmenter(pool)
    (busy_id, busy_key), (other_id, other_key) = await new_tenant(pool), await new_tenant(pool)
    async with api(app, busy_key) as busy, api(app, other_key) as other:
        # When one tenant's large import is in progress (waiting for a bulk worker) and meanwhile
        # it sends a customer upsert and a second import, and the other tenant a small import
        async with bulk_workers_busy():
            first = asyncio.create_task(
                busy.post("/v1/suppressions/import", json={"phones": numbers(3_000_000, IMPORT_SIZE)})
            )
            while not GUARD.in_progress(busy_id):
                assert not first.done(), first.result().text
                await asyncio.sleep(0.01)
            meanwhile = await asyncio.gather(
                busy.post(
                    "/v1/booking/customers:upsert",
                    json={"rows": [{"external_id": "c1", "phone": "+14155550001"}]},
                ),
                busy.post("/v1/suppressions/import", json={"phones": numbers(5_000_000, 10)}),
                other.post("/v1/suppressions/import", json={"phones": numbers(6_000_000, 10)}),
            )
        results = [await first, *meanwhile]

    # Then the busy tenant's first request went through and the two sent meanwhile got 409 saying why
    assert [response.status_code for response in results] == [200, 409, 409, 200]
    for refused in results[1:3]:
        assert "another bulk request of this tenant is in progress" in refused.text
        assert int(refused.headers["Retry-After"]) >= 1
    # And they changed nothing, while the other tenant's import was not held up by the busy tenant
    assert await suppressed(pool, busy_id) == IMPORT_SIZE
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", busy_id) == 0
    assert await suppressed(pool, other_id) == 10

    # And once the first has finished, the busy tenant's next bulk request is accepted
    async with api(app, busy_key) as busy:
        again = await busy.post("/v1/suppressions/import", json={"phones": numbers(5_000_000, 10)})
    assert again.status_code == 200


async def test_another_tenants_reads_keep_answering_while_a_large_import_normalises_its_numbers(
    pool: asyncpg.Pool,
) -> None:
    # Given one tenant importing 20,000 numbers and another reading its tenant record meanwhile
    app = segmenter(pool)
    (importer_id, importer_key), (_, reader_key) = await new_tenant(pool), await new_tenant(pool)
    answered: list[float] = []
    async with api(app, importer_key) as importer, api(app, reader_key) as reader:
        started = time.monotonic()
        importing = asyncio.create_task(
            importer.post("/v1/suppressions/import", json={"phones": numbers(4_000_000, IMPORT_SIZE)})
        )
        while not importing.done():
            response = await reader.get("/v1/tenant")
            assert response.status_code == 200
            answered.append(time.monotonic())
        imported = await importing
        finished = time.monotonic()

    # Then the import went through, and the reader was answered all along: the longest silence
    # is a small part of the import (blocking the loop would leave the whole normalisation silent)
    assert imported.status_code == 200
    assert await suppressed(pool, importer_id) == IMPORT_SIZE
    during = [moment for moment in answered if moment <= finished]
    assert len(during) >= 5, during
    moments = [started, *during, finished]
    silences = [later - earlier for earlier, later in itertools.pairwise(moments)]
    assert max(silences) < (finished - started) / 3, (max(silences), finished - started)


async def test_a_booking_event_is_applied_while_the_bulk_workers_are_busy(pool: asyncpg.Pool) -> None:
    # Given both bulk workers busy with other tenants' imports
    tenant_id, _ = await new_tenant(pool)
    event = BookingCustomerUpserted(tenant_id=tenant_id, external_id="c1", phone="+14155550123")
    async with bulk_workers_busy():
        # When a customer event of another tenant arrives, it is applied without waiting for them
        await asyncio.wait_for(apply_event(pool, event.TYPE, event.model_dump_json().encode()), timeout=5)
        assert (
            await pool.fetchval("SELECT phone_e164 FROM customers WHERE tenant_id = $1", tenant_id)
            == "+14155550123"
        )


async def test_an_upsert_waiting_for_a_bulk_worker_holds_no_database_connection(
    isolated_env: IsolatedEnvironment, pool: asyncpg.Pool
) -> None:
    # Given a segmenter with a single database connection and both bulk workers busy
    single = await create_pool(isolated_env.database_url, min_size=1, max_size=1)
    app = segmenter(single)
    (importer_id, importer_key), (_, reader_key) = await new_tenant(pool), await new_tenant(pool)
    rows = [{"external_id": f"c{n}", "phone": number} for n, number in enumerate(numbers(7_000_000, 200))]
    assert len(rows) > ON_LOOP_AT_MOST
    try:
        async with api(app, importer_key) as importer, api(app, reader_key) as reader:
            async with bulk_workers_busy():
                # When one tenant's customer upsert waits for a worker
                upserting = asyncio.create_task(
                    importer.post("/v1/booking/customers:upsert", json={"rows": rows})
                )
                await asyncio.sleep(0.5)
                assert not upserting.done()
                # Then another tenant's request still gets the connection
                answered = await asyncio.wait_for(reader.get("/v1/tenant"), timeout=5)
                assert answered.status_code == 200
            # And the upsert goes through once a worker is free
            assert (await upserting).status_code == 200
    finally:
        await single.close()
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", importer_id) == 200
