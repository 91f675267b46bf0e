"""Deletes that cascade stay cheap: every foreign key has an index leading with its columns, and
deleting a tenant with thousands of customers and appointments takes index lookups, not scans."""

from __future__ import annotations

import uuid

import asyncpg

UNINDEXED_FOREIGN_KEYS = """
SELECT c.conrelid::regclass::text AS table_name, c.conname,
       array_agg(a.attname ORDER BY k.ord) AS columns
FROM pg_constraint c
CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k (attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
WHERE c.contype = 'f'
  AND c.connamespace = 'public'::regnamespace
  AND NOT EXISTS (
      SELECT 1 FROM pg_index i
      WHERE i.indrelid = c.conrelid
        AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
        AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey
  )
GROUP BY 1, 2
ORDER BY 1, 2
"""


async def test_every_foreign_key_has_an_index_leading_with_its_columns(pool: asyncpg.Pool) -> None:
    missing = await pool.fetch(UNINDEXED_FOREIGN_KEYS)
    assert not missing, (
        "foreign keys without an index leading with their columns (each delete of a referenced row"
        " scans the table): "
        + "; ".join(f"{r['table_name']}.{r['conname']} ({', '.join(r['columns'])})" for r in missing)
        + ". Add one in a migration, e.g. CREATE INDEX <table>_<column> ON <table> (<column>)."
    )


async def test_deleting_a_tenant_cascades_through_its_appointments_by_index(pool: asyncpg.Pool) -> None:
    # Given a tenant with 2,000 customers of 3 appointments each, beside another tenant's data
    tenants = [uuid.uuid4(), uuid.uuid4()]
    for tenant_id in tenants:
        await pool.execute(
            "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from)"
            " VALUES ($1, 'delete-test', $2, 'x', '+14155550100')",
            tenant_id,
            "AC" + tenant_id.hex,
        )
        await pool.execute(
            "INSERT INTO customers (tenant_id, external_id, phone_e164)"
            " SELECT $1, 'c' || g, '+1415' || lpad(g::text, 7, '0') FROM generate_series(1, 2000) g",
            tenant_id,
        )
        await pool.execute(
            "INSERT INTO appointments (tenant_id, external_id, customer_id, starts_at, created_at, status,"
            " status_changed_at)"
            " SELECT $1, 'a' || c.id || '-' || n, c.id, now(), now(), 'approved', now()"
            " FROM customers c CROSS JOIN generate_series(1, 3) n WHERE c.tenant_id = $1",
            tenant_id,
        )
    await pool.execute("ANALYZE customers; ANALYZE appointments")

    # When the first tenant is deleted
    await pool.execute("DELETE FROM tenants WHERE id = $1", tenants[0], timeout=60)

    # Then its rows are gone, the other tenant's are kept, and the foreign-key action finds a
    # customer's appointments by index (not one scan of all appointments per customer)
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE tenant_id = $1", tenants[0]) == 0
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE tenant_id = $1", tenants[1]) == 6000
    plan = await pool.fetchval("EXPLAIN (FORMAT JSON) DELETE FROM appointments WHERE customer_id = $1", 1)
    assert "appointments_customer_id" in str(plan)
    await pool.execute("DELETE FROM tenants WHERE id = $1", tenants[1], timeout=60)
