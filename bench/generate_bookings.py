"""Booking data for the audience benchmark: one tenant with 1,000,000 customers and 5,000,000
appointments, plus 20 small tenants, in a database of its own (``wce_bench`` by default).

Rows are generated inside PostgreSQL (INSERT … SELECT over generate_series), which loads them
faster than any client-side COPY, and go through the same triggers as every other write. The
data is deterministic (``setseed``) and shaped like a salon's: a skewed number of appointments per
customer (many with none or one, a few regulars), three years of history and two months ahead,
1% of customers without a valid phone, 2% sharing a number with another customer, 1% suppressed.

``--cold`` leaves out the final ``VACUUM (ANALYZE)``: the tables are then as a bulk load leaves
them, never analysed nor vacuumed, which is what the audience benchmark's cold mode measures.

    python -m bench.generate_bookings [--customers 1000000] [--appointments 5000000] [--cold]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from shared.schema import migrate_dsn

BENCH_DSN = "postgresql://postgres@127.0.0.1:5432/wce_bench"
BIG_TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
TIMEZONE = "America/New_York"
# The clock the benchmark's windows use: history runs up to it and two months past it.
CLOCK = datetime(2026, 6, 15, 16, 0, tzinfo=UTC)
SMALL_TENANTS = 20
ANALYSED_TABLES = ("customers", "appointments", "suppressions")

TENANT = """
INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from, timezone)
VALUES ($1, $2, $3, 'bench', '+14155550100', $4)
"""

SERVICES = """
INSERT INTO services (tenant_id, external_id, name)
SELECT $1, 's' || g, 'Service ' || g FROM generate_series(1, 20) g
"""

LOCATIONS = """
INSERT INTO locations (tenant_id, external_id, name)
SELECT $1, 'l' || g, 'Location ' || g FROM generate_series(1, 5) g
"""

STAFF = """
INSERT INTO staff (tenant_id, external_id, name)
SELECT $1, 'st' || g, 'Staff ' || g FROM generate_series(1, 30) g
"""

STATUSES = """
INSERT INTO appointment_statuses (tenant_id, name, counts_as_cancelled)
VALUES ($1, 'no_show', true), ($1, 'rescheduled', false)
"""

# Every 100th customer has no valid phone; every 50th shares the previous customer's number.
CUSTOMERS = """
INSERT INTO customers (tenant_id, external_id, first_name, last_name, phone_raw, phone_e164)
SELECT $1, 'c' || g, 'First' || g, 'Last' || g, p, CASE WHEN g % 100 = 0 THEN NULL ELSE p END
FROM (
    SELECT g, '+1' || (2012000000 + $3::bigint + CASE WHEN g % 50 = 1 AND g > 1 THEN g - 1 ELSE g END) AS p
    FROM generate_series($2::bigint, $4::bigint) g
) x
"""

# Customers are drawn with a skew (power 1.6) so counts per customer range from none to dozens.
# A tenant's customers are inserted by one connection, so their ids are consecutive.
APPOINTMENTS = """
WITH refs AS (
    SELECT (SELECT min(id) FROM customers WHERE tenant_id = $1) AS first_customer,
           (SELECT array_agg(id ORDER BY id) FROM services WHERE tenant_id = $1) AS services,
           (SELECT array_agg(id ORDER BY id) FROM locations WHERE tenant_id = $1) AS locations,
           (SELECT array_agg(id ORDER BY id) FROM staff WHERE tenant_id = $1) AS staff
)
INSERT INTO appointments (tenant_id, external_id, customer_id, service_id, location_id, staff_id,
                          starts_at, ends_at, created_at, status, status_changed_at)
SELECT $1, 'a' || s.g, r.first_customer + s.customer_no, r.services[s.service_no], r.locations[s.location_no],
       r.staff[s.staff_no], s.starts_at, s.starts_at + interval '1 hour', s.starts_at - s.lead, s.status,
       least(s.starts_at - s.lead + s.lead * s.changed, $5::timestamptz)
FROM (
    SELECT g,
           least($4::bigint - 1, floor($4::bigint * power(random(), 1.6))::bigint) AS customer_no,
           $5::timestamptz - interval '1095 days' + random() * interval '1155 days' AS starts_at,
           random() * interval '60 days' AS lead,
           random() AS changed,
           (ARRAY['approved','approved','approved','approved','approved','approved','approved',
                  'pending','canceled','rejected'])[1 + floor(random() * 10)::int] AS status,
           1 + floor(random() * 20)::int AS service_no,
           1 + floor(random() * 5)::int AS location_no,
           1 + floor(random() * 30)::int AS staff_no
    FROM generate_series($2::bigint, $3::bigint) g
) s
CROSS JOIN refs r
"""

# Secondary indexes of a table (not those behind constraints): dropped for the load and rebuilt
# after it, which is many times faster than maintaining them row by row.
SECONDARY_INDEXES = """
SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = $1::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
"""

# What the appointment triggers maintain, computed once for the whole load.
CUSTOMER_FACTS = "SELECT refresh_customer_appointment_facts(array_agg(id)) FROM customers"

SUPPRESSIONS = """
INSERT INTO suppressions (tenant_id, phone_e164, source)
SELECT DISTINCT $1::uuid, phone_e164, 'import' FROM customers
WHERE tenant_id = $1 AND phone_e164 IS NOT NULL AND id % 100 = 7
ON CONFLICT DO NOTHING
"""


async def vacuum_analyze(conn: asyncpg.Connection) -> None:
    """What a load ends with when it is done by hand (and what autovacuum does some time later)."""
    for table in ANALYSED_TABLES:
        await conn.execute(f"VACUUM (ANALYZE) {table}")


async def loaded(dsn: str, customers: int) -> bool:
    """Whether the big tenant's customers are there (the data set takes minutes to make)."""
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        count = await conn.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", BIG_TENANT)
        return bool(count >= customers)
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()


async def never_analysed(dsn: str) -> bool:
    """Whether the tables are as a load leaves them: never analysed nor vacuumed (``--cold``)."""
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        analysed = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname = ANY ($1::text[])"
            " AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL"
            " OR last_vacuum IS NOT NULL OR last_autovacuum IS NOT NULL)",
            list(ANALYSED_TABLES),
        )
        return bool(analysed == 0)
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()


async def _tenant(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    name: str,
    customers: int,
    appointments: int,
    offset: int,
    batch: int,
) -> None:
    await conn.execute(TENANT, tenant_id, name, "AC" + tenant_id.hex, TIMEZONE)
    for sql in (SERVICES, LOCATIONS, STAFF, STATUSES):
        await conn.execute(sql, tenant_id)
    for start in range(1, customers + 1, batch):
        await conn.execute(CUSTOMERS, tenant_id, start, offset, min(start + batch - 1, customers))
    # Generated rows reference only what was just inserted, so the foreign-key and fact triggers
    # are skipped for the load (replica role) and the facts computed once the indexes are back.
    await conn.execute("SET session_replication_role = replica")
    for start in range(1, appointments + 1, batch):
        end = min(start + batch - 1, appointments)
        await conn.execute(APPOINTMENTS, tenant_id, start, end, customers, CLOCK)
    await conn.execute("SET session_replication_role = DEFAULT")
    await conn.execute(SUPPRESSIONS, tenant_id)


async def _drop_indexes(conn: asyncpg.Connection, table: str) -> list[asyncpg.Record]:
    indexes: list[asyncpg.Record] = await conn.fetch(SECONDARY_INDEXES, table)
    for index in indexes:
        await conn.execute(f'DROP INDEX "{index["name"]}"')
    return indexes


async def _create_indexes(conn: asyncpg.Connection, indexes: list[asyncpg.Record]) -> None:
    for index in indexes:
        await conn.execute(index["definition"])


async def generate(dsn: str, customers: int, appointments: int, *, analyse: bool = True) -> None:
    began = time.monotonic()
    admin = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()
    await migrate_dsn(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET maintenance_work_mem = '1GB'")
        appointment_indexes = await _drop_indexes(conn, "appointments")
        await conn.execute("SELECT setseed(0.42)")
        await _tenant(conn, BIG_TENANT, "bench big", customers, appointments, 0, 250_000)
        print(f"big tenant loaded in {time.monotonic() - began:.0f}s", flush=True)
        for n in range(SMALL_TENANTS):
            tenant_id = uuid.UUID(int=BIG_TENANT.int + 1 + n)
            await _tenant(conn, tenant_id, f"bench small {n}", 2_000, 10_000, 10_000_000 * (n + 1), 250_000)
        await _create_indexes(conn, appointment_indexes)
        # The facts are written to every customer row at once: the customer indexes that carry
        # them are built after that rather than updated row by row through it.
        customer_indexes = await _drop_indexes(conn, "customers")
        await conn.execute(CUSTOMER_FACTS)
        await _create_indexes(conn, customer_indexes)
        print(f"indexes rebuilt at {time.monotonic() - began:.0f}s", flush=True)
        if analyse:
            await vacuum_analyze(conn)
    finally:
        await conn.close()
    print(f"generated in {time.monotonic() - began:.0f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=BENCH_DSN)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--appointments", type=int, default=5_000_000)
    parser.add_argument("--cold", action="store_true", help="leave the tables unanalysed and unvacuumed")
    args = parser.parse_args()
    asyncio.run(generate(args.dsn, args.customers, args.appointments, analyse=not args.cold))


if __name__ == "__main__":
    main()
