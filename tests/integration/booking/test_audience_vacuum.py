"""Previews right after a bulk load read the covering indexes alone: the owner's vacuum process
vacuums the audience tables when the segmenter asks, before the import answers (or the first
preview on data loaded another way goes on), and vacuums nothing else."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from booking_api import client, load_raw, new_tenant

from services.segmenter.audience import statistics
from shared import audience_vacuum
from tests.support import IsolatedEnvironment
from tools.stack import ManagedProcess

AS_OF = "2026-03-20T12:00:00-04:00"
ROWS = audience_vacuum.VACUUM_AFTER_ROWS


async def start_listening(pool: asyncpg.Pool, process: ManagedProcess) -> None:
    deadline = time.monotonic() + 60
    while not await pool.fetchval(audience_vacuum.LISTENING, audience_vacuum.APPLICATION_NAME):
        assert process.alive(), process.tail()
        assert time.monotonic() < deadline, f"the vacuum process never listened:\n{process.tail()}"
        await asyncio.sleep(0.1)


@pytest.fixture
def vacuum_process(
    isolated_env: IsolatedEnvironment, tmp_path: Path, pool: asyncpg.Pool
) -> Iterator[ManagedProcess]:
    """``python -m shared.audience_vacuum`` as the owner of the test database."""
    env = isolated_env.env(WCE_MIGRATION_DATABASE_URL=isolated_env.database_url, WCE_LOG_LEVEL="INFO")
    process = ManagedProcess("shared.audience_vacuum", env, None, tmp_path)
    try:
        yield process
    finally:
        process.stop()


async def heap_fetches(pool: asyncpg.Pool, table: str, tenant_id: uuid.UUID) -> int:
    """Table pages an index-only count of the tenant's rows still visits (none once all-visible)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        await conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        plan: Any = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant_id
        )
    node = plan[0]["Plan"]
    while node.get("Node Type") != "Index Only Scan":
        [node] = node["Plans"]
    return int(node["Heap Fetches"])


async def vacuums(pool: asyncpg.Pool, table: str) -> int:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        count: int = await conn.fetchval(
            "SELECT vacuum_count + autovacuum_count FROM pg_stat_user_tables WHERE relname = $1", table
        )
        return count


async def inserted_since_vacuum(pool: asyncpg.Pool, table: str) -> int:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        count: int = await conn.fetchval(
            "SELECT n_ins_since_vacuum FROM pg_stat_user_tables WHERE relname = $1", table
        )
        return count


def customers(count: int) -> list[dict[str, Any]]:
    return [
        {"external_id": f"v{i}", "first_name": f"F{i}", "phone": f"+1415{3000000 + i:07d}"}
        for i in range(count)
    ]


async def test_a_bulk_import_leaves_the_customers_vacuumed_before_it_answers(
    pool: asyncpg.Pool,
    fresh: statistics.AudienceStatistics,
    no_autovacuum: None,
    vacuum_process: ManagedProcess,
) -> None:
    # Given the owner's vacuum process listening, and a tenant
    await start_listening(pool, vacuum_process)
    tenant_id, key = await new_tenant(pool)
    before = await vacuums(pool, "customers")

    # When it upserts enough customers through the API to be worth a vacuum
    async with client(pool, key) as api:
        response = await api.post("/v1/booking/customers:upsert", json={"rows": customers(ROWS)})
        assert response.status_code == 200, response.text

    # Then, as soon as the answer came, the customers had been vacuumed: counting the tenant's
    # customers from an index visits no table page
    assert await vacuums(pool, "customers") > before, vacuum_process.tail()
    assert await heap_fetches(pool, "customers", tenant_id) == 0


async def test_a_preview_on_tables_loaded_another_way_asks_for_their_vacuum(
    pool: asyncpg.Pool,
    fresh: statistics.AudienceStatistics,
    no_autovacuum: None,
    vacuum_process: ManagedProcess,
) -> None:
    # Given the vacuum process listening, then a tenant's customers and an appointment each
    # inserted straight into the tables (a restore, a script)
    await start_listening(pool, vacuum_process)
    tenant_id, key = await new_tenant(pool)
    await load_raw(pool, tenant_id, ROWS)
    assert await heap_fetches(pool, "appointments", tenant_id) == ROWS
    # ... and the statistics counters showing it (they lag behind commits by up to a few seconds)
    deadline = time.monotonic() + 30
    while await inserted_since_vacuum(pool, "appointments") < ROWS:
        assert time.monotonic() < deadline, "the load never showed in the counters"
        await asyncio.sleep(0.2)

    # When the tenant previews an audience
    async with client(pool, key) as api:
        response = await api.post("/v1/audiences/preview", json={"segment": "upcoming", "as_of": AS_OF})
    assert response.json()["total"] == ROWS

    # Then the preview found both tables worth a vacuum and asked for it, which follows shortly
    deadline = time.monotonic() + 60
    while await heap_fetches(pool, "appointments", tenant_id) or await heap_fetches(
        pool, "customers", tenant_id
    ):
        assert time.monotonic() < deadline, vacuum_process.tail()
        await asyncio.sleep(0.2)


async def test_a_preview_does_not_wait_for_a_vacuum_another_tenants_import_waits_for(
    pool: asyncpg.Pool,
    fresh: statistics.AudienceStatistics,
    no_autovacuum: None,
    monkeypatch: pytest.MonkeyPatch,
    isolated_env: IsolatedEnvironment,
) -> None:
    # Given a vacuum process that listens but never vacuums (busy, or slow on a large table)
    monkeypatch.setattr(statistics, "VACUUM_WAIT_S", 15.0)
    asked = asyncio.Event()
    listener = await asyncpg.connect(
        isolated_env.database_url, server_settings={"application_name": audience_vacuum.APPLICATION_NAME}
    )
    await listener.add_listener(audience_vacuum.CHANNEL, lambda *_: asked.set())
    try:
        _, importer_key = await new_tenant(pool)
        _, reader_key = await new_tenant(pool)

        # When one tenant imports enough customers to be worth a vacuum, which its answer waits for
        async with client(pool, importer_key) as api:
            began = time.monotonic()
            importing = asyncio.create_task(
                api.post("/v1/booking/customers:upsert", json={"rows": customers(ROWS)})
            )
            await asyncio.wait_for(asked.wait(), 60)

            # Then another tenant's preview meanwhile answers at once, the vacuum still awaited
            async with client(pool, reader_key) as reader:
                previewed = time.monotonic()
                response = await reader.post(
                    "/v1/audiences/preview", json={"segment": "upcoming", "as_of": AS_OF}
                )
                assert response.status_code == 200, response.text
                assert time.monotonic() - previewed < 5
                assert not importing.done()

            # ... and the import answered once it had given up on the vacuum
            imported = await importing
            assert imported.status_code == 200, imported.text
            assert time.monotonic() - began >= statistics.VACUUM_WAIT_S
    finally:
        await listener.close()


async def test_without_a_vacuum_process_an_import_neither_asks_nor_waits(
    pool: asyncpg.Pool, fresh: statistics.AudienceStatistics, no_autovacuum: None
) -> None:
    # Given no vacuum process connected (one a previous test stopped may take a moment to leave)
    deadline = time.monotonic() + 30
    while await pool.fetchval(audience_vacuum.LISTENING, audience_vacuum.APPLICATION_NAME):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    tenant_id, key = await new_tenant(pool)

    # When a tenant upserts as many customers
    began = time.monotonic()
    async with client(pool, key) as api:
        rows = [{**row, "external_id": f"n{i}"} for i, row in enumerate(customers(ROWS))]
        response = await api.post("/v1/booking/customers:upsert", json={"rows": rows})
        assert response.status_code == 200, response.text

    # Then it answered without waiting for a vacuum nobody would run
    assert time.monotonic() - began < statistics.VACUUM_WAIT_S / 2
    assert await heap_fetches(pool, "customers", tenant_id) == ROWS


async def test_a_notification_vacuums_the_audience_tables_it_names_and_nothing_else(
    pool: asyncpg.Pool, no_autovacuum: None, vacuum_process: ManagedProcess
) -> None:
    # Given the vacuum process listening
    await start_listening(pool, vacuum_process)
    before = {table: await vacuums(pool, table) for table in ("services", "tenants", "recipients")}

    # When anyone who can connect names an audience table and tables that are not
    await pool.execute(
        "SELECT pg_notify($1, $2)", audience_vacuum.CHANNEL, "services,tenants,recipients; DROP TABLE tenants"
    )

    # Then the audience table is vacuumed, and no other
    deadline = time.monotonic() + 30
    while await vacuums(pool, "services") == before["services"]:
        assert time.monotonic() < deadline, vacuum_process.tail()
        await asyncio.sleep(0.1)
    assert await vacuums(pool, "tenants") == before["tenants"]
    assert await vacuums(pool, "recipients") == before["recipients"]
