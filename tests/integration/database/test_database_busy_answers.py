"""A database that does not answer in time makes a route answer 503 with Retry-After, not a bare
500: the pool's command timeout, a statement timeout, and a lock wait past its lock timeout, each
caused for real on a database of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared.db import create_pool
from shared.http import DATABASE_BUSY_RETRY_AFTER_S, install_common


@pytest.fixture
async def impatient_pool(scratch_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(scratch_database, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def busy_app(pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI()
    install_common(app, {})

    @app.get("/command-timeout")
    async def command_timeout() -> dict[str, str]:
        await pool.execute("SELECT pg_sleep(5)", timeout=0.2)
        return {"ok": "yes"}

    @app.get("/statement-timeout")
    async def statement_timeout() -> dict[str, str]:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = '100ms'")
            await conn.execute("SELECT pg_sleep(5)")
        return {"ok": "yes"}

    @app.get("/lock-timeout")
    async def lock_timeout() -> dict[str, str]:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '100ms'")
            await conn.execute("LOCK TABLE busy_probe IN ACCESS EXCLUSIVE MODE")
        return {"ok": "yes"}

    @app.get("/fine")
    async def fine() -> dict[str, int]:
        return {"answer": await pool.fetchval("SELECT 42")}

    return app


async def get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


def assert_busy(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(DATABASE_BUSY_RETRY_AFTER_S)
    assert "busy" in response.json()["detail"]


async def test_a_query_past_the_command_timeout_answers_503_with_retry_after(
    impatient_pool: asyncpg.Pool,
) -> None:
    assert_busy(await get(busy_app(impatient_pool), "/command-timeout"))


async def test_a_statement_cancelled_by_its_timeout_answers_503(impatient_pool: asyncpg.Pool) -> None:
    assert_busy(await get(busy_app(impatient_pool), "/statement-timeout"))


async def test_a_lock_not_granted_in_time_answers_503_and_the_next_request_is_served(
    impatient_pool: asyncpg.Pool,
) -> None:
    # Given a table another session holds locked
    holder = await impatient_pool.acquire()
    try:
        await holder.execute("CREATE TABLE IF NOT EXISTS busy_probe (id int)")
        async with holder.transaction():
            await holder.execute("LOCK TABLE busy_probe IN ACCESS EXCLUSIVE MODE")
            # When a request needs that lock, Then it is told to come back later
            app = busy_app(impatient_pool)
            assert_busy(await get(app, "/lock-timeout"))
        # and once the lock is gone the same app serves requests as before
        response = await get(app, "/fine")
        assert response.status_code == 200 and response.json() == {"answer": 42}
    finally:
        await holder.execute("DROP TABLE IF EXISTS busy_probe")
        await impatient_pool.release(holder)
