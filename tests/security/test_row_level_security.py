"""Row-level security on every tenant table: a runtime role sees and writes only the tenant its
transaction names (``wce.tenant_id``), nothing at all when none is named, and only the
service's cross-tenant role (inside ``all_tenants_transaction``) spans tenants."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from shared.db import all_tenants_transaction, tenant_transaction
from tests.integration.tracker.helpers import seed_campaign, seed_recipients, seed_tenant
from tests.support import IsolatedEnvironment

SERVICES = ("segmenter", "tracker", "dispatcher", "sender")
# Tables the fixture fills for both tenants: a query without its tenant predicate on these would
# find the other tenant's rows if the policies did not hold.
SEEDED = ("api_keys", "campaigns", "customers", "recipients", "suppressions", "message_events")
SUPPRESS = "INSERT INTO suppressions (tenant_id, phone_e164, source) VALUES ($1, $2, 'api')"
POLICY = "tenant_id = nullif(current_setting('wce.tenant_id', true), '')::uuid"


@dataclass(frozen=True)
class TwoTenants:
    a: uuid.UUID
    b: uuid.UUID


@pytest.fixture(scope="module")
async def logins(pool: asyncpg.Pool, isolated_env: IsolatedEnvironment) -> AsyncIterator[dict[str, str]]:
    """A login role per service (a member of wce_<service>, as a deployment creates), by URL."""
    prefix = f"wce_rls_{uuid.uuid4().hex[:10]}"
    urls = {}
    for service in SERVICES:
        await pool.execute(f'CREATE ROLE "{prefix}_{service}" LOGIN IN ROLE wce_{service}')
        urls[service] = isolated_env.database_url.replace("postgres@", f"{prefix}_{service}@")
    try:
        yield urls
    finally:
        for service in SERVICES:
            await pool.execute(f'DROP ROLE IF EXISTS "{prefix}_{service}"')


@pytest.fixture(scope="module")
async def tenants(pool: asyncpg.Pool, seeded_data_removed: None) -> TwoTenants:
    """Two tenants with keys, a campaign, customers, recipients, a suppression and events each."""
    ids = []
    for _ in range(2):
        tenant = await seed_tenant(pool)
        campaign_id = await seed_campaign(pool, tenant.id)
        recipients = await seed_recipients(pool, tenant.id, campaign_id, 3)
        await pool.execute(
            "INSERT INTO suppressions (tenant_id, phone_e164, source) VALUES ($1, '+14155550100', 'api')",
            tenant.id,
        )
        await pool.execute(
            "INSERT INTO message_events (tenant_id, campaign_id, recipient_id, from_state, to_state, source)"
            " VALUES ($1, $2, $3, 'queued', 'sent', 'sender')",
            tenant.id,
            campaign_id,
            recipients[0].id,
        )
        ids.append(tenant.id)
    return TwoTenants(*ids)


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


async def test_a_query_without_its_tenant_predicate_finds_only_the_tenant_its_transaction_names(
    pool: asyncpg.Pool, logins: dict[str, str], tenants: TwoTenants
) -> None:
    for table in SEEDED:
        # Given both tenants have rows in the table (as the owner sees it)
        owners_view = {r["tenant_id"] for r in await pool.fetch(f"SELECT DISTINCT tenant_id FROM {table}")}
        assert {tenants.a, tenants.b} <= owners_view, table
    for service, url in logins.items():
        conn = await _connect(url)
        try:
            for table in SEEDED:
                # When a runtime role reads the table with no tenant predicate in tenant A's transaction
                async with tenant_transaction(conn, tenants.a, readonly=True) as scoped:
                    seen = await _tenants_in(scoped, table)
                # Then it finds tenant A's rows and nothing of any other tenant
                assert seen == {tenants.a}, (service, table, seen)
        finally:
            await conn.close()


async def test_with_no_tenant_named_a_runtime_role_finds_no_row_of_any_tenant_table(
    pool: asyncpg.Pool, logins: dict[str, str], tenants: TwoTenants
) -> None:
    tables = await _tenant_tables(pool)
    for service, url in logins.items():
        conn = await _connect(url)
        try:
            # Given the connection just served a transaction for tenant A (as a pooled one does)
            async with tenant_transaction(conn, tenants.a, readonly=True) as scoped:
                assert await scoped.fetchval("SELECT count(*) FROM recipients") == 3
            for table in tables:
                # When it reads a tenant table outside any tenant's transaction
                count = await conn.fetchval(f"SELECT count(*) FROM {table}")
                # Then it finds nothing: the setting ended with the transaction
                assert count == 0, (service, table, count)
        finally:
            await conn.close()


async def test_a_write_into_another_tenants_rows_is_refused(
    pool: asyncpg.Pool, logins: dict[str, str], tenants: TwoTenants
) -> None:
    conn = await _connect(logins["segmenter"])
    try:
        # When the segmenter, in tenant A's transaction, inserts a row naming tenant B
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with tenant_transaction(conn, tenants.a) as scoped:
                await scoped.execute(SUPPRESS, tenants.b, "+14155550199")
        # or moves one of A's rows to tenant B
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with tenant_transaction(conn, tenants.a) as scoped:
                await scoped.execute("UPDATE customers SET tenant_id = $1", tenants.b)
        # or updates and deletes B's rows by their tenant id
        async with tenant_transaction(conn, tenants.a) as scoped:
            updated = await scoped.execute(
                "UPDATE customers SET first_name = 'taken' WHERE tenant_id = $1", tenants.b
            )
            deleted = await scoped.execute("DELETE FROM suppressions WHERE tenant_id = $1", tenants.b)
        # Then nothing of B's was touched
        assert (updated, deleted) == ("UPDATE 0", "DELETE 0")
        # and with no tenant named, no write lands anywhere
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute(SUPPRESS, tenants.a, "+14155550198")
    finally:
        await conn.close()
    tracker = await _connect(logins["tracker"])
    try:
        async with tenant_transaction(tracker, tenants.a) as scoped:
            recipients = await scoped.execute(
                "UPDATE recipients SET state = 'failed' WHERE tenant_id = $1", tenants.b
            )
            events = await scoped.execute("DELETE FROM message_events WHERE tenant_id = $1", tenants.b)
        assert (recipients, events) == ("UPDATE 0", "DELETE 0")
    finally:
        await tracker.close()
    # As the owner sees it, tenant B's rows are as they were
    assert await _count(pool, "customers", tenants.b, "first_name = 'taken'") == 0
    assert await _count(pool, "suppressions", tenants.b) == 1
    assert await _count(pool, "message_events", tenants.b) == 1
    assert await _count(pool, "recipients", tenants.b, "state = 'failed'") == 0


async def test_only_the_cross_tenant_transaction_spans_tenants_and_only_while_it_lasts(
    logins: dict[str, str], tenants: TwoTenants
) -> None:
    for service, url in logins.items():
        conn = await _connect(url)
        try:
            # When a service's login takes a cross-tenant transaction
            async with all_tenants_transaction(conn, readonly=True) as spanning:
                role = await spanning.fetchval("SELECT current_user")
                seen = await _tenants_in(spanning, "recipients")
            # Then it acts as its service's cross-tenant role and sees both tenants
            assert role == f"wce_{service}_all_tenants"
            assert {tenants.a, tenants.b} <= seen
            # and afterwards it is its own login again, subject to the policies
            assert await conn.fetchval("SELECT current_user") != role
            assert await conn.fetchval("SELECT count(*) FROM recipients") == 0
        finally:
            await conn.close()


async def test_a_service_login_cannot_take_another_services_cross_tenant_role(logins: dict[str, str]) -> None:
    conn = await _connect(logins["dispatcher"])
    try:
        # When the dispatcher (which writes nothing) tries the sender's cross-tenant role
        # Then it is refused: each login may switch only to its own service's
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE wce_sender_all_tenants")
    finally:
        await conn.close()


async def test_cross_tenant_roles_bypass_the_policies_and_nothing_else_does(pool: asyncpg.Pool) -> None:
    rows = {
        r["rolname"]: r
        for r in await pool.fetch(
            "SELECT rolname, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname LIKE 'wce\\_%' ESCAPE '\\'"
        )
    }
    for service in SERVICES:
        assert not rows[f"wce_{service}"]["rolbypassrls"]
        assert rows[f"wce_{service}_all_tenants"]["rolbypassrls"]
        assert not rows[f"wce_{service}_all_tenants"]["rolcanlogin"]


async def test_every_tenant_table_has_row_level_security_and_the_tenant_policy(pool: asyncpg.Pool) -> None:
    """Fails for a tenant table (one with a tenant_id column) added without its policy."""
    missing = []
    for table in await _tenant_tables(pool):
        enabled = await pool.fetchval(
            "SELECT relrowsecurity FROM pg_class WHERE oid = ('public.' || quote_ident($1))::regclass", table
        )
        policy = await pool.fetchrow(
            "SELECT qual, with_check FROM pg_policies WHERE schemaname = 'public' AND tablename = $1"
            " AND policyname = 'tenant_isolation' AND cmd = 'ALL' AND 'public' = ANY(roles)",
            table,
        )
        keyed = policy is not None and all(
            "current_setting('wce.tenant_id'" in (text or "") for text in policy.values()
        )
        if not (enabled and keyed):
            missing.append(table)
    assert not missing, (
        f"tenant tables without row-level security: {', '.join(missing)}. Add each to the list of tenant"
        " tables in shared/privileges.sql (the DO block under 'Row-level security'), which enables it and"
        f" creates the policy tenant_isolation USING ({POLICY}) WITH CHECK (same) after every migration run."
        " Then run every statement on the table inside shared.db.tenant_transaction(pool, tenant_id) (or"
        " OneTenant); a path that must span tenants uses all_tenants_transaction (or AllTenants) and is"
        " added to the cross-tenant list in shared/privileges.sql's header and the README"
    )


async def _tenants_in(conn: asyncpg.Connection, table: str) -> set[uuid.UUID]:
    return {row["tenant_id"] for row in await conn.fetch(f"SELECT DISTINCT tenant_id FROM {table}")}


async def _count(pool: asyncpg.Pool, table: str, tenant_id: uuid.UUID, condition: str = "true") -> int:
    count: int = await pool.fetchval(
        f"SELECT count(*) FROM {table} WHERE tenant_id = $1 AND {condition}", tenant_id
    )
    return count


async def _tenant_tables(pool: asyncpg.Pool) -> list[str]:
    return [
        row["table_name"]
        for row in await pool.fetch(
            "SELECT c.table_name FROM information_schema.columns c"
            " JOIN pg_tables t ON t.schemaname = c.table_schema AND t.tablename = c.table_name"
            " WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' ORDER BY 1"
        )
    ]
