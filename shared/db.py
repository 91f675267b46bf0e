"""asyncpg pool with a start-up retry loop, and the migration runner.

Migrations are the numbered ``shared/migrations/*.sql`` files, applied in order once each,
under an advisory lock so several services starting together don't race.
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources

import asyncpg
import orjson

from shared.logging import get_logger

log = get_logger(__name__)

MIGRATION_LOCK_KEY = 7_340_001


class DatabaseUnavailable(RuntimeError):
    pass


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Reset on release: nothing beyond asyncpg's own (roll back an open transaction, drop
    listeners). Its default also runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` — a round trip and four statements on every release, which at thousands of
    statements per second cost the sender a twentieth of its CPU and the server as much. Pool
    connections carry no session state: nothing here uses SET, LISTEN or cursors outside a
    transaction, and the one session advisory lock (the sender's maintenance leadership) is
    released explicitly, its connection closed if that fails."""


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, retry_s: float = 60.0
) -> asyncpg.Pool:
    """Create a pool, retrying while the database is starting; fail after ``retry_s`` seconds."""
    deadline = time.monotonic() + retry_s
    delay = 0.2
    while True:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                reset=_keep_session,
                command_timeout=60,
            )
            assert pool is not None
            return pool
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if time.monotonic() > deadline:
                raise DatabaseUnavailable(f"database not reachable at start-up: {exc}") from exc
            log.warning("database not ready, retrying", error=str(exc), delay_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("shared") / "migrations"
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name, (folder / name).read_text(encoding="utf-8")) for name in names]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied_now.append(name)
            log.info("migration applied", migration=name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def ensure_database(dsn: str) -> None:
    """Create the configured database when the server has none of that name (local runs, CI)."""
    from urllib.parse import urlparse, urlunparse

    parsed = urlparse(dsn)
    name = parsed.path.lstrip("/")
    admin_dsn = urlunparse(parsed._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await conn.close()


async def migrate_dsn(dsn: str, retry_s: float = 60.0) -> list[str]:
    await ensure_database(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=1, retry_s=retry_s)
    try:
        async with pool.acquire() as conn:
            return await migrate(conn)
    finally:
        await pool.close()
