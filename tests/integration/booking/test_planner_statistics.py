"""Plans that are good at once: bulk writes leave the audience tables analysed before they answer,
a preview on tables loaded another way analyses them first (once, however many previews ask),
small writes analyse nothing, and the runtime role can analyse the audience tables and no other."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from booking_api import client, load_raw, new_tenant

from services.segmenter.audience import statistics
from services.segmenter.booking import consumer
from services.segmenter.booking.csv_rows import import_rows
from shared.events import BookingCustomerUpserted
from tests.support import IsolatedEnvironment

AS_OF = "2026-03-20T12:00:00-04:00"
BATCH = 10_000
NEVER_SKIP = 2**62  # a "seen" analysis count no table reaches: the function then always analyses


async def counters(pool: asyncpg.Pool, table: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row: asyncpg.Record = await conn.fetchrow(
            "SELECT c.reltuples, s.n_mod_since_analyze, s.analyze_count, s.last_analyze"
            " FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relname = $1",
            table,
        )
        return row


async def counters_reported(pool: asyncpg.Pool) -> None:
    """Have every pooled backend report the changes it has not reported yet. A backend reports when
    it goes idle, before it answers, but at most once a second (otherwise up to ten seconds later):
    an earlier test's rows arriving in the counters after the analysis would make a table stale."""
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        await asyncio.sleep(1.1)
        for conn in held:
            await conn.execute("SELECT 1")
    finally:
        for conn in held:
            await pool.release(conn)


async def analysed_now(pool: asyncpg.Pool, *tables: str) -> None:
    """Start from tables just analysed, so what a test writes decides whether they are stale."""
    await counters_reported(pool)
    await pool.fetchval(
        "SELECT analyze_audience_tables($1::text[], $2::bigint[])", list(tables), [NEVER_SKIP] * len(tables)
    )


async def rows_to_make_stale(pool: asyncpg.Pool, table: str) -> int:
    estimated = (await counters(pool, table))["reltuples"]
    threshold = min(
        statistics.MAX_CHANGED_ROWS,
        statistics.MIN_CHANGED_ROWS + statistics.CHANGED_FRACTION * max(estimated, 0),
    )
    return math.ceil(threshold * 1.2)


async def wait_for_counted_changes(pool: asyncpg.Pool, table: str, at_least: int) -> None:
    """The statistics counters lag behind commits (a backend reports when it goes idle)."""
    deadline = time.monotonic() + 30
    while (await counters(pool, table))["n_mod_since_analyze"] < at_least:
        assert time.monotonic() < deadline, f"{table}: the load never showed in the counters"
        await asyncio.sleep(0.2)


async def planned_rows(pool: asyncpg.Pool, table: str, tenant_id: uuid.UUID) -> float:
    plan = await pool.fetchval(f"EXPLAIN (FORMAT JSON) SELECT * FROM {table} WHERE tenant_id = $1", tenant_id)
    return float(plan[0]["Plan"]["Plan Rows"])


def customers(count: int, prefix: str = "c") -> list[dict[str, Any]]:
    """``count`` customers, each with a number of its own."""
    return [
        {"external_id": f"{prefix}{i}", "first_name": f"F{i}", "phone": f"+1415{2000000 + i:07d}"}
        for i in range(count)
    ]


async def test_a_bulk_import_leaves_the_customers_analysed_before_it_answers(
    pool: asyncpg.Pool, fresh: statistics.AudienceStatistics, no_autovacuum: None
) -> None:
    # Given analysed tables, and enough new customers to make the table stale
    await analysed_now(pool, "customers")
    before = await counters(pool, "customers")
    count = await rows_to_make_stale(pool, "customers")
    tenant_id, key = await new_tenant(pool)
    rows = customers(count)

    # When they are upserted through the API, in batches of up to 10,000
    async with client(pool, key) as api:
        for start in range(0, count, BATCH):
            response = await api.post(
                "/v1/booking/customers:upsert", json={"rows": rows[start : start + BATCH]}
            )
            assert response.status_code == 200, response.text

    # Then, as soon as the last answer came, the table had been analysed since, with the new
    # customers in its statistics, and few changes left uncounted by the analysis
    after = await counters(pool, "customers")
    assert after["analyze_count"] > before["analyze_count"]
    assert after["last_analyze"] > before["last_analyze"]
    assert after["n_mod_since_analyze"] <= BATCH
    assert count / 2 <= await planned_rows(pool, "customers", tenant_id) <= count * 2


async def test_rows_written_in_rounds_the_counters_do_not_show_yet_are_counted_whole(
    pool: asyncpg.Pool, fresh: statistics.AudienceStatistics, no_autovacuum: None
) -> None:
    # Given analysed customers, large enough that a round of a few thousand rows is not stale alone
    tenant_id, _ = await new_tenant(pool)
    await load_raw(pool, tenant_id, 20_000)
    await analysed_now(pool, "customers")
    before = await counters(pool, "customers")
    threshold = await rows_to_make_stale(pool, "customers") / 1.2
    each = math.ceil(threshold * 0.6)
    assert each >= statistics.CHECK_AFTER_ROWS

    # When a writer reports two rounds of rows the statistics counters do not show (they lag behind
    # commits by up to ten seconds: here the rows are only reported, never written)
    await fresh.after_write(pool, {"customers": each})
    after_one = await counters(pool, "customers")
    await fresh.after_write(pool, {"customers": each})
    after_two = await counters(pool, "customers")

    # Then the first round's check found the table fresh, and the second counted both rounds
    assert after_one["analyze_count"] == before["analyze_count"]
    assert after_two["analyze_count"] == before["analyze_count"] + 1


async def test_a_preview_on_tables_loaded_without_analyse_analyses_them_once_for_concurrent_previews(
    pool: asyncpg.Pool, fresh: statistics.AudienceStatistics, no_autovacuum: None
) -> None:
    # Given analysed tables, then a tenant's customers and appointments inserted straight into
    # them, enough to make both stale, and the counters showing the load
    await analysed_now(pool, "customers", "appointments")
    count = max(await rows_to_make_stale(pool, "customers"), await rows_to_make_stale(pool, "appointments"))
    tenant_id, key = await new_tenant(pool)
    await load_raw(pool, tenant_id, count)
    await wait_for_counted_changes(pool, "customers", count)
    await wait_for_counted_changes(pool, "appointments", count)
    before = {table: await counters(pool, table) for table in ("customers", "appointments")}
    # ... and a planner that does not know this tenant's rows yet
    assert await planned_rows(pool, "appointments", tenant_id) < count / 2

    # When eight previews of that tenant run at once
    async with client(pool, key) as api:
        responses = await asyncio.gather(
            *(
                api.post("/v1/audiences/preview", json={"segment": "upcoming", "as_of": AS_OF})
                for _ in range(8)
            )
        )

    # Then every preview counted the tenant's customers, and each table was analysed exactly once
    assert [response.json()["total"] for response in responses] == [count] * 8
    for table in ("customers", "appointments"):
        assert (await counters(pool, table))["analyze_count"] == before[table]["analyze_count"] + 1, table
    assert count / 2 <= await planned_rows(pool, "appointments", tenant_id) <= count * 2


async def test_two_segmenter_processes_finding_the_same_stale_table_analyse_it_once(
    pool: asyncpg.Pool, no_autovacuum: None
) -> None:
    # Given a customers table made stale by a raw load
    await analysed_now(pool, "customers", "appointments")
    count = await rows_to_make_stale(pool, "customers")
    tenant_id, _ = await new_tenant(pool)
    await load_raw(pool, tenant_id, count)
    await wait_for_counted_changes(pool, "customers", count)
    before = await counters(pool, "customers")

    # When two processes (each with its own state) check before a read at the same time
    await asyncio.gather(
        statistics.AudienceStatistics().before_read(pool), statistics.AudienceStatistics().before_read(pool)
    )

    # Then the second waited for the first's analysis instead of repeating it
    assert (await counters(pool, "customers"))["analyze_count"] == before["analyze_count"] + 1


async def test_small_writes_and_previews_analyse_nothing(
    pool: asyncpg.Pool, fresh: statistics.AudienceStatistics, no_autovacuum: None
) -> None:
    # Given analysed tables
    await analysed_now(pool, "customers", "appointments")
    before = {table: await counters(pool, table) for table in ("customers", "appointments")}
    _, key = await new_tenant(pool)

    # When a tenant upserts a few customers, one request after the other, and previews
    async with client(pool, key) as api:
        rows = customers(100)
        for start in range(0, 100, 20):
            response = await api.post("/v1/booking/customers:upsert", json={"rows": rows[start : start + 20]})
            assert response.status_code == 200
        preview = await api.post("/v1/audiences/preview", json={"as_of": AS_OF})

    # Then nothing was analysed
    assert preview.json()["total"] == 100
    for table in ("customers", "appointments"):
        assert (await counters(pool, table))["analyze_count"] == before[table]["analyze_count"], table


async def test_a_large_csv_import_leaves_the_customers_analysed(
    pool: asyncpg.Pool, fresh: statistics.AudienceStatistics, no_autovacuum: None
) -> None:
    # Given analysed tables and a CSV file of enough customers to make the table stale
    await analysed_now(pool, "customers")
    before = await counters(pool, "customers")
    count = await rows_to_make_stale(pool, "customers")
    tenant_id, _ = await new_tenant(pool)
    lines = ["external_id,first_name,phone\n"] + [
        f"{row['external_id']},{row['first_name']},{row['phone']}\n" for row in customers(count)
    ]

    # When it is imported
    report = await import_rows(pool, tenant_id=tenant_id, kind="customers", lines=lines)

    # Then the customers are analysed by the time the import returns
    assert report.inserted == count
    assert (await counters(pool, "customers"))["analyze_count"] > before["analyze_count"]
    assert count / 2 <= await planned_rows(pool, "customers", tenant_id) <= count * 2


async def test_a_sync_of_many_booking_events_leaves_the_customers_analysed(
    pool: asyncpg.Pool,
    fresh: statistics.AudienceStatistics,
    no_autovacuum: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given analysed tables, and thresholds scaled down so a sync of 60 events is a large one
    monkeypatch.setattr(statistics, "MIN_CHANGED_ROWS", 50)
    monkeypatch.setattr(statistics, "CHECK_AFTER_ROWS", 50)
    monkeypatch.setattr(statistics, "CHANGED_FRACTION", 0.0)
    await analysed_now(pool, "customers")
    before = await counters(pool, "customers")
    tenant_id, _ = await new_tenant(pool)

    # When 60 customer events are applied one by one, as the booking consumer does
    for row in customers(60, prefix="ev"):
        event = BookingCustomerUpserted(tenant_id=tenant_id, **row)
        await consumer.apply_event(pool, BookingCustomerUpserted.TYPE, event.model_dump_json().encode())

    # Then the consumer had the table analysed once the sync had written enough
    assert (await counters(pool, "customers"))["analyze_count"] == before["analyze_count"] + 1


async def test_an_analysis_in_progress_blocks_no_reads_or_writes_of_another_tenant(
    pool: asyncpg.Pool,
) -> None:
    # Given an analysis of customers and appointments whose transaction is still open (its locks held)
    tenant_id, _ = await new_tenant(pool)
    analysing = await pool.acquire()
    other = await pool.acquire()
    try:
        transaction = analysing.transaction()
        await transaction.start()
        await analysing.fetchval(
            "SELECT analyze_audience_tables($1::text[], $2::bigint[])",
            ["appointments", "customers"],
            [NEVER_SKIP, NEVER_SKIP],
        )
        held = await pool.fetch(
            "SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE l.pid = $1 AND c.relname IN ('customers', 'appointments') AND l.granted",
            analysing.get_server_pid(),
        )
        assert {(row["relname"], row["mode"]) for row in held} >= {
            ("customers", "ShareUpdateExclusiveLock"),
            ("appointments", "ShareUpdateExclusiveLock"),
        }

        # When another tenant reads and writes both tables meanwhile, allowed no lock wait at all
        async with other.transaction():
            await other.execute("SET LOCAL lock_timeout = '100ms'")
            customer_id = await other.fetchval(
                "INSERT INTO customers (tenant_id, external_id, phone_e164) VALUES ($1, 'x', '+14155550100')"
                " RETURNING id",
                tenant_id,
            )
            await other.execute(
                "INSERT INTO appointments"
                " (tenant_id, external_id, customer_id, starts_at, created_at, status, status_changed_at)"
                " VALUES ($1, 'x', $2, now(), now(), 'approved', now())",
                tenant_id,
                customer_id,
            )
            await other.execute("UPDATE customers SET first_name = 'Y' WHERE id = $1", customer_id)
            await other.execute("DELETE FROM appointments WHERE tenant_id = $1", tenant_id)
            counted = await other.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant_id)

        # Then all of it went through; only another analysis of the same table waits
        assert counted == 1
        async with other.transaction():
            await other.execute("SET LOCAL lock_timeout = '100ms'")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await other.fetchval(
                    "SELECT analyze_audience_tables($1::text[], $2::bigint[])", ["customers"], [NEVER_SKIP]
                )
        await transaction.rollback()
    finally:
        await pool.release(other)
        await pool.release(analysing)


@pytest.fixture
async def as_runtime_role(
    pool: asyncpg.Pool, isolated_env: IsolatedEnvironment
) -> AsyncIterator[dict[str, str]]:
    """Login roles of the segmenter and the tracker, as a deployment creates them."""
    prefix = f"wce_stats_{uuid.uuid4().hex[:10]}"
    urls = {}
    for service in ("segmenter", "tracker"):
        await pool.execute(f'CREATE ROLE "{prefix}_{service}" LOGIN IN ROLE wce_{service}')
        urls[service] = isolated_env.database_url.replace("postgres@", f"{prefix}_{service}@")
    try:
        yield urls
    finally:
        for service in ("segmenter", "tracker"):
            await pool.execute(f'DROP ROLE IF EXISTS "{prefix}_{service}"')


async def test_the_segmenter_role_analyses_the_audience_tables_and_no_other(
    pool: asyncpg.Pool, as_runtime_role: dict[str, str]
) -> None:
    analyse = "SELECT analyze_audience_tables($1::text[], $2::bigint[])"
    before = await counters(pool, "customers")
    segmenter = await asyncpg.connect(as_runtime_role["segmenter"])
    try:
        # Given the segmenter's runtime role, which owns no table: ANALYZE itself skips them
        assert not await segmenter.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        await segmenter.execute("ANALYZE customers")
        assert (await counters(pool, "customers"))["analyze_count"] == before["analyze_count"]

        # When it asks the function for the customers table
        analysed = await segmenter.fetchval(analyse, ["customers"], [NEVER_SKIP])

        # Then the customers are analysed as their owner would
        assert analysed == ["customers"]
        assert (await counters(pool, "customers"))["analyze_count"] == before["analyze_count"] + 1

        # But any other table, or a name that is not one, is refused and nothing is analysed
        for tables in (
            ["recipients"],
            ["customers", "tenants"],
            ["public.customers"],
            ['customers"; DROP TABLE tenants; --'],
            ["pg_class"],
            [None],
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await segmenter.fetchval(analyse, tables, [NEVER_SKIP] * len(tables))
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await segmenter.fetchval(analyse, ["customers"], [])
        assert (await counters(pool, "customers"))["analyze_count"] == before["analyze_count"] + 1
    finally:
        await segmenter.close()

    # And another service's role may not call the function at all
    tracker = await asyncpg.connect(as_runtime_role["tracker"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await tracker.fetchval(analyse, ["customers"], [NEVER_SKIP])
    finally:
        await tracker.close()


async def test_autovacuum_sets_the_visibility_map_soon_after_a_bulk_load(pool: asyncpg.Pool) -> None:
    # Given the audience tables' own autovacuum settings
    options = {
        row["relname"]: dict(option.split("=") for option in row["reloptions"])
        for row in await pool.fetch(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('appointments', 'customers')"
        )
    }

    # Then a new tenant's million rows in a table of fifty million are vacuumed after half a million
    # inserts at most, not ten million (the server's default of 20 % of the table)
    for table in ("appointments", "customers"):
        threshold = int(options[table]["autovacuum_vacuum_insert_threshold"])
        scale = float(options[table]["autovacuum_vacuum_insert_scale_factor"])
        assert threshold + scale * 50_000_000 <= 510_000, table
