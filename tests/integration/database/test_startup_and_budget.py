"""Start-up that waits for PostgreSQL (a full server answers ``too many clients``) and the
connection budget refused at start."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared import connection_budget
from shared.settings import Settings
from tests.support import IsolatedEnvironment, ManagedProcess, free_port


async def test_a_service_waits_while_the_database_refuses_it_with_too_many_connections(
    pool: asyncpg.Pool, isolated_env: IsolatedEnvironment, tmp_path: Path
) -> None:
    # Given a role whose connection limit is reached (the server answers 53300, as when full)
    role = f"wce_t_{uuid.uuid4().hex[:10]}_full"
    await pool.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    await pool.execute(f'GRANT pg_read_all_data, pg_write_all_data TO "{role}"')
    port = free_port()
    url = isolated_env.database_url.replace("postgres@", f"{role}@")
    dispatcher = ManagedProcess(
        "services.dispatcher",
        isolated_env.env(
            WCE_DATABASE_URL=url,
            WCE_MIGRATE_AT_START="false",
            WCE_DISPATCHER_PORT=str(port),
            WCE_STARTUP_RETRY_S="60",
        ),
        f"http://127.0.0.1:{port}/healthz",
        tmp_path,
    )
    try:
        # When a dispatcher starts and is refused, it is still waiting seconds later (it used to
        # exit in 0.65 s)
        for _ in range(300):
            if "too many connections" in dispatcher.tail():
                break
            await asyncio.sleep(0.2)
        assert "too many connections" in dispatcher.tail()
        await asyncio.sleep(3)
        assert dispatcher.alive(), dispatcher.tail()
        # Then it starts as soon as the database takes it
        await pool.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
        dispatcher.wait_healthy(timeout_s=60)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=5)).status_code == 200
    finally:
        dispatcher.stop()
        await pool.execute(f'DROP ROLE IF EXISTS "{role}"')


async def test_a_service_gives_up_after_the_start_up_retry_time(
    isolated_env: IsolatedEnvironment, tmp_path: Path
) -> None:
    closed_port = free_port()
    dispatcher = ManagedProcess(
        "services.dispatcher",
        isolated_env.env(
            WCE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed_port}/x",
            WCE_STARTUP_RETRY_S="2",
            WCE_DISPATCHER_PORT=str(free_port()),
        ),
        None,
        tmp_path,
    )
    started = time.monotonic()
    dispatcher.proc.wait(timeout=30)
    assert dispatcher.proc.returncode != 0
    assert time.monotonic() - started >= 2
    assert "database not reachable at start-up" in dispatcher.tail(80)


async def test_a_budget_beyond_the_servers_connections_is_refused_naming_the_numbers(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        limit = await connection_budget.server_limit(conn)
    too_many = limit // 16 + 1
    settings = Settings(db_replicas=f"sender={too_many}")  # type: ignore[arg-type]
    with pytest.raises(connection_budget.ConnectionBudgetExceeded, match=f"sender {too_many}×16"):
        await connection_budget.check(pool, settings, "sender")


async def test_a_budget_that_fits_passes_and_a_pooler_limit_replaces_the_servers(pool: asyncpg.Pool) -> None:
    fitting = await connection_budget.check(pool, Settings(db_replicas="sender=2,tracker=2"), "tracker")  # type: ignore[arg-type]
    assert fitting.fits
    behind_pooler = Settings(db_replicas="sender=2", db_max_connections=40)  # type: ignore[arg-type]
    with pytest.raises(connection_budget.ConnectionBudgetExceeded, match="limit of 40"):
        await connection_budget.check(pool, behind_pooler, "sender")


async def test_a_role_connection_limit_below_the_services_pools_is_refused(
    pool: asyncpg.Pool, isolated_env: IsolatedEnvironment
) -> None:
    role = f"wce_t_{uuid.uuid4().hex[:10]}_small"
    await pool.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 15')
    try:
        small = await asyncpg.create_pool(
            isolated_env.database_url.replace("postgres@", f"{role}@"), min_size=1, max_size=1
        )
        try:
            with pytest.raises(connection_budget.ConnectionBudgetExceeded, match="CONNECTION LIMIT 15"):
                await connection_budget.check(small, Settings(), "sender")
            assert (await connection_budget.check(small, Settings(db_pool_max=5), "tracker")).fits
        finally:
            await small.close()
    finally:
        await pool.execute(f'DROP ROLE IF EXISTS "{role}"')
