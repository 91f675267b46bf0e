"""The engine through a transaction-mode PgBouncer of its own, and across a restart of a
PostgreSQL cluster of its own mid-campaign: every recipient sent once, every status final."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from shared.schema import migrate_dsn
from tests.e2e.database.servers import OwnPgBouncer, OwnPostgres
from tests.e2e.engine.conftest import FAST_ENV
from tests.e2e.engine.engine_helpers import seed_customers, simulator_stats, wait_sent, wait_settled
from tests.e2e.helpers import create_campaign, new_tenant, wait_for_state
from tests.support import IsolatedEnvironment, Stack
from tools.stack import SERVICE_ROLES
from tools.twilio_sim.admin_client import SimulatorAdmin

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Fewer than the 62 connections the services' pools may open (segmenter, tracker and dispatcher
# 10 each, two senders 16 each).
SERVER_CONNECTIONS = 30


@pytest.fixture
def own_vhost() -> Iterator[IsolatedEnvironment]:
    """A broker vhost of this test's own (its database lives on the test's own server)."""
    environment = IsolatedEnvironment()
    environment.create()
    try:
        yield environment
    finally:
        environment.destroy()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres().init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def own_database(own_postgres: OwnPostgres) -> AsyncIterator[str]:
    name = "wce_own"
    admin = await asyncpg.connect(own_postgres.url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield name


async def test_a_campaign_runs_through_a_transaction_mode_pgbouncer(
    own_vhost: IsolatedEnvironment, own_postgres: OwnPostgres, own_database: str, tmp_path: Path
) -> None:
    # Given a PgBouncer in transaction mode (server connections shared between transactions) with
    # half as many server connections as the services' pools hold, and the migrations applied
    # through it
    # (trust authentication: PgBouncer still admits only the users in its list)
    logins = f"wce_login_{uuid.uuid4().hex[:10]}"
    users = ("postgres", *(f"{logins}_{service}" for service in SERVICE_ROLES))
    bouncer = OwnPgBouncer(server_port=own_postgres.port, pool_size=SERVER_CONNECTIONS, users=users).start()
    through_bouncer = bouncer.url(own_database)
    try:
        await migrate_dsn(through_bouncer, create_database=False, statement_cache_size=0)
        env = own_vhost.env(
            **FAST_ENV,
            WCE_DATABASE_URL=through_bouncer,
            WCE_DB_STATEMENT_CACHE_SIZE="0",
            WCE_MIGRATE_AT_START="false",
            WCE_DB_MAX_CONNECTIONS=str(bouncer.max_client_conn),
        )
        stack = Stack(env=env, log_dir=tmp_path / "stack", senders=2, login_prefix=logins)
        pool = await asyncpg.create_pool(own_postgres.url(own_database), min_size=1, max_size=2)
        try:
            stack.start()
            tenant = await new_tenant(stack, rate=None)
            await seed_customers(pool, tenant, 1500)
            # When a campaign to 1,500 runs through it
            started = time.monotonic()
            campaign = await create_campaign(stack, tenant)
            counts = await wait_settled(pool, campaign["id"], 1500, timeout_s=240, stack=stack)
            await wait_for_state(stack, tenant, campaign["id"], {"completed"}, timeout_s=60)
            elapsed = time.monotonic() - started
            # Then everyone was sent exactly once and every status callback was recorded
            stats = await simulator_stats(stack, tenant.account_sid)
            assert stats["accepted_total"] == 1500 and not stats["duplicates"], stats
            assert set(counts) <= {"sent", "delivered", "read"}, counts
            await _wait_for_callbacks(pool, campaign["id"], stack)
            # And the services really shared the pooler's few server connections
            servers = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = $1 AND backend_type = 'client backend'",
                own_database,
            )
            assert servers <= SERVER_CONNECTIONS + 2, servers
            print(f"pgbouncer campaign: 1500 recipients in {elapsed:.1f}s, {counts}")
        finally:
            stack.stop()
            await pool.close()
    finally:
        bouncer.destroy()


async def _wait_for_callbacks(
    pool: asyncpg.Pool, campaign_id: str, stack: Stack, timeout_s: float = 90
) -> None:
    """Every status callback Twilio got a 2xx for is recorded: once the simulator has delivered
    them all, a row is still ``sent`` only if a callback of its own was refused (and Twilio does
    not retry those; re-checking such rows is the engine's separate repair)."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with SimulatorAdmin(stack.simulator_url) as sim:
            stats = await sim.stats()
        if stats["callbacks_pending"] == 0:
            break
        assert time.monotonic() < deadline, (
            f"callbacks still pending after {timeout_s}s: {stats['callbacks_pending']}"
        )
        await asyncio.sleep(0.5)
    # The tracker records its last batch within two seconds
    settle_by = time.monotonic() + 2
    while True:
        left_at_sent = await pool.fetchval(
            "SELECT count(*) FROM recipients WHERE campaign_id = $1 AND state = 'sent'",
            uuid.UUID(campaign_id),
        )
        if left_at_sent <= stats["callbacks_failed"] or time.monotonic() > settle_by:
            break
        await asyncio.sleep(0.1)
    assert left_at_sent <= stats["callbacks_failed"], (left_at_sent, stats["callbacks_failed"])


async def test_a_database_restart_mid_campaign_loses_nothing_and_sends_nothing_twice(
    own_vhost: IsolatedEnvironment, own_postgres: OwnPostgres, own_database: str, tmp_path: Path
) -> None:
    # Given the engine on a PostgreSQL cluster of its own, sending a campaign at 150/s
    env = own_vhost.env(**FAST_ENV, WCE_DATABASE_URL=own_postgres.url(own_database), WCE_STARTUP_RETRY_S="90")
    stack = Stack(env=env, log_dir=tmp_path / "stack", senders=2)
    pool = await asyncpg.create_pool(own_postgres.url(own_database), min_size=0, max_size=2)
    try:
        stack.start()
        tenant = await new_tenant(stack, rate=150)
        await seed_customers(pool, tenant, 2000)
        started = time.monotonic()
        campaign = await create_campaign(stack, tenant)
        await wait_sent(pool, campaign["id"], 400, timeout_s=120)
        # When the cluster is shut down (every connection cut), down for 4 s, and started again
        await pool.expire_connections()
        own_postgres.stop("fast")
        await asyncio.sleep(4)
        own_postgres.start()
        # Then the campaign completes: every recipient final, each number accepted once
        counts = await wait_settled(pool, campaign["id"], 2000, timeout_s=300, stack=stack)
        await wait_for_state(stack, tenant, campaign["id"], {"completed"}, timeout_s=120)
        elapsed = time.monotonic() - started
        stats = await simulator_stats(stack, tenant.account_sid)
        assert not stats["duplicates"], stats
        assert stats["accepted_total"] == 2000, stats
        assert set(counts) <= {"sent", "delivered", "read"}, counts
        # And every service is still running
        assert all(process.alive() for process in stack.processes.values()), stack.logs()
        print(f"restart campaign: 2000 recipients in {elapsed:.1f}s, {counts}")
    finally:
        stack.stop()
        await pool.close()
