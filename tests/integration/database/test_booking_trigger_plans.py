"""A batch of customers, and of their appointments, costs rows in proportion to the batch however
stale the statistics are.

The booking tables' triggers keep per-customer facts (migrations 0200, 1800): whether another
customer of the tenant has the same number, how many appointments a customer has. Once their plans
trusted the statistics, and a tenant the statistics had not seen (analysed when the table held many
small tenants, so that each "has" a row or two) was walked whole for each number of the batch: 22
million rows read for 5,000 customers, and the upsert of 10,000 customers timed out at 60 s on a
database other tests had used. On never-analysed tables, 2,000 appointments read 2 million rows.

Here, on a database of the test's own with autovacuum off, never analysed or analysed holding 300
tenants of one or of two customers, a tenant writes two batches of customers and then their
appointments, as the segmenter's role under its tenant. Every statement run meanwhile, the
triggers' own included, is explained by ``auto_explain`` to this connection. The rows of the
booking tables read by plan nodes run more than once (a loop over the batch), and the pairs joins
tried, stay within a small multiple of the batch: each row is found by its key. One pass over the
tenant or a table, in a statement without a loop, is allowed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.segmenter.booking import queries
from shared.schema import migrate_dsn
from tests.integration.database.plans import as_role, insert_tenant, rows_read

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The batches one tenant writes on each kind of stale statistics, starting empty: the old
# triggers' plans went wrong at the first batch of these sizes (2,000 rows read 2 million;
# 5,000 read 22 million).
BATCHES = {
    "never analysed": (2_000, 5_000),
    "analysed holding tenants of two customers": (5_000, 5_000),
    "analysed holding tenants of one customer": (5_000, 5_000),
}
SMALL_TENANTS = 300
# Rows of the booking tables a batch may read per row written: the row, the customers it
# refreshes, their appointments (a walk of the tenant reads thousands per row).
ROWS_PER_ROW = 10
BOOKING_TABLES = {"customers", "appointments"}


async def small_tenants_before(conn: asyncpg.Connection, customers_each: int) -> None:
    """What the statistics saw: many tenants of one or two customers, each with an appointment (so
    a tenant "has" a row or two, and the tenant id looks almost unique), the tenants' numbers the
    same two (as where every tenant is a test's)."""
    await conn.execute(
        "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from)"
        " SELECT gen_random_uuid(), 'small', 'AC' || md5(g::text), 'x', '+14155238886'"
        " FROM generate_series(1, $1::int) g",
        SMALL_TENANTS,
    )
    await conn.execute(
        "INSERT INTO customers (tenant_id, external_id, first_name, last_name, phone_e164)"
        " SELECT t.id, 'c' || g, '', '', '+1417' || lpad(g::text, 7, '0')"
        " FROM tenants t CROSS JOIN generate_series(1, $1::int) g WHERE t.name = 'small'",
        customers_each,
    )
    await conn.execute(
        "INSERT INTO appointments"
        " (tenant_id, external_id, customer_id, starts_at, ends_at, created_at, status,"
        " status_changed_at)"
        " SELECT tenant_id, 'a' || id, id, now(), now(), now(), 'approved', now() FROM customers"
    )


@pytest.fixture(params=list(BATCHES))
async def stale_tables(
    request: pytest.FixtureRequest, scratch_database: str
) -> AsyncIterator[tuple[asyncpg.Connection, tuple[int, ...]]]:
    await migrate_dsn(scratch_database)
    conn = await asyncpg.connect(scratch_database)
    try:
        for table in BOOKING_TABLES:
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
        if request.param != "never analysed":
            await small_tenants_before(conn, 1 if "one customer" in request.param else 2)
            for table in BOOKING_TABLES:
                await conn.execute(f"ANALYZE {table}")
        yield conn, BATCHES[request.param]
    finally:
        await conn.close()


class ExplainedStatements:
    """The plans ``auto_explain`` sends this connection for every statement, nested ones too."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.plans: list[dict[str, Any]] = []
        conn.add_log_listener(self._heard)

    def _heard(self, conn: asyncpg.Connection, message: asyncpg.PostgresLogMessage) -> None:
        text = message.message
        if "{" in text and '"Plan"' in text:
            self.plans.append(json.loads(text[text.index("{") :]))

    def rows_read(self, *, repeated_only: bool = False) -> float:
        return sum(
            rows_read(plan["Plan"], BOOKING_TABLES, repeated_only=repeated_only) for plan in self.plans
        )

    def worst(self) -> str:
        plan = max(self.plans, key=lambda plan: rows_read(plan["Plan"], BOOKING_TABLES, repeated_only=True))
        return (
            f"{rows_read(plan['Plan'], BOOKING_TABLES, repeated_only=True):,.0f} rows in loops:"
            f" {' '.join(plan['Query Text'].split())[:120]}"
        )


async def explain_everything(conn: asyncpg.Connection) -> ExplainedStatements:
    explained = ExplainedStatements(conn)
    await conn.execute("LOAD 'auto_explain'")
    for setting, value in {
        "auto_explain.log_min_duration": "0",
        "auto_explain.log_nested_statements": "on",
        "auto_explain.log_analyze": "on",
        "auto_explain.log_timing": "off",
        "auto_explain.log_format": "json",
        "client_min_messages": "log",
    }.items():
        await conn.execute("SELECT set_config($1, $2, false)", setting, value)
    return explained


async def as_segmenter(conn: asyncpg.Connection, tenant_id: uuid.UUID, sql: str, *args: Any) -> None:
    async with as_role(conn, "wce_segmenter", tenant_id, commit=True):
        await conn.execute(sql, *args)


async def upsert_customers(conn: asyncpg.Connection, tenant_id: uuid.UUID, numbers: Sequence[int]) -> None:
    external = [f"c{n}" for n in numbers]
    phones = [f"+1415{2_000_000 + (n - 1 if n % 10 == 1 else n):07d}" for n in numbers]
    blank = [""] * len(numbers)
    await as_segmenter(
        conn, tenant_id, queries.UPSERT_CUSTOMERS, tenant_id, external, blank, blank, blank, phones, phones
    )


async def upsert_appointments(conn: asyncpg.Connection, tenant_id: uuid.UUID, numbers: Sequence[int]) -> None:
    ids = await conn.fetch(
        "SELECT id FROM customers WHERE tenant_id = $1 AND external_id = ANY ($2::text[])",
        tenant_id,
        [f"c{n}" for n in numbers],
    )
    customer_ids = [row["id"] for row in ids]
    count = len(customer_ids)
    now = datetime.now(UTC)
    none: list[None] = [None] * count
    await as_segmenter(
        conn,
        tenant_id,
        queries.UPSERT_APPOINTMENTS,
        tenant_id,
        [f"a{n}" for n in numbers],
        customer_ids,
        none,
        none,
        none,
        [now] * count,
        [now] * count,
        [now] * count,
        ["approved"] * count,
        none,
        [now] * count,
        [],
    )


async def test_batches_of_customers_and_appointments_read_rows_in_proportion_to_the_batch(
    stale_tables: tuple[asyncpg.Connection, tuple[int, ...]],
) -> None:
    conn, batches = stale_tables
    tenant_id = await insert_tenant(conn)
    written = 0
    explained = await explain_everything(conn)
    # One customer in ten shares its number with the one before it, so the flag is exercised.
    for batch, size in enumerate(batches):
        numbers = range(written, written + size)
        explained.plans.clear()
        await upsert_customers(conn, tenant_id, numbers)
        customers_read = explained.rows_read()
        customers_looped = explained.rows_read(repeated_only=True)
        customers_worst = explained.worst()

        explained.plans.clear()
        await upsert_appointments(conn, tenant_id, numbers)
        appointments_read = explained.rows_read()
        appointments_looped = explained.rows_read(repeated_only=True)
        appointments_worst = explained.worst()

        print(
            f"\nbatch {batch + 1} of {size:,} into a tenant of {written:,}:"
            f" customers read {customers_read:,.0f} rows, {customers_looped:,.0f} in loops;"
            f" appointments {appointments_read:,.0f}, {appointments_looped:,.0f} in loops"
        )
        assert customers_looped <= ROWS_PER_ROW * size, customers_worst
        assert appointments_looped <= ROWS_PER_ROW * size, appointments_worst
        written += size

    await conn.execute("RESET client_min_messages")
    # And the facts are right: each customer has its appointment, one in five shares a number
    facts = await conn.fetchrow(
        "SELECT count(*) AS customers, count(*) FILTER (WHERE appointment_count = 1) AS with_one,"
        " count(*) FILTER (WHERE phone_shared) AS shared FROM customers WHERE tenant_id = $1",
        tenant_id,
    )
    assert dict(facts) == {"customers": written, "with_one": written, "shared": written // 5}
