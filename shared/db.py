"""asyncpg connections and pools that wait for the database at start.

Start-up waits up to ``WCE_STARTUP_RETRY_S`` while the server cannot take the connection yet
(refused, starting up, shutting down, ``too many clients``, a role's connection limit); it fails
at once on what waiting cannot fix (a wrong password, a role that may not log in). The migration
runner is ``shared/schema.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import orjson

from shared.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

# Errors a server answers while it cannot take the connection *yet*: worth waiting for.
_TRANSIENT_SQLSTATES = frozenset(
    {
        "53300",  # too_many_connections (server full, or the role's CONNECTION LIMIT)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, recovering)
        "08000",  # connection_exception
        "08001",  # sqlclient_unable_to_establish_sqlconnection
        "08003",  # connection_does_not_exist
        "08006",  # connection_failure
        "08004",  # sqlserver_rejected_establishment_of_sqlconnection
    }
)


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
    transaction, and the only advisory locks (a segmenter's campaign runners) are
    transaction-scoped."""


def is_transient_connect_error(exc: BaseException) -> bool:
    """Whether a failed connection attempt is worth retrying (the server may take it later)."""
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return getattr(exc, "sqlstate", None) in _TRANSIENT_SQLSTATES
    return False


async def _retrying(what: str, attempt: Callable[[], Awaitable[T]], retry_s: float) -> T:
    deadline = time.monotonic() + retry_s
    delay = 0.2
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not is_transient_connect_error(exc):
                raise
            if time.monotonic() > deadline:
                raise DatabaseUnavailable(
                    f"database not reachable at start-up after {retry_s:.0f}s: {exc}"
                ) from exc
            log.warning(
                f"{what}: database not ready, retrying", error=str(exc) or type(exc).__name__, delay_s=delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def connect_with_retry(
    dsn: str, *, retry_s: float = 60.0, statement_cache_size: int = 100
) -> asyncpg.Connection:
    """One connection (migrations, one-off commands), waiting while the server cannot take it."""

    async def attempt() -> asyncpg.Connection:
        return await asyncpg.connect(dsn, statement_cache_size=statement_cache_size, timeout=10)

    return await _retrying("connect", attempt, retry_s)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    retry_s: float = 60.0,
    statement_cache_size: int = 100,
) -> asyncpg.Pool:
    """Create a pool, waiting while the database cannot take its connections; fail after ``retry_s``.

    ``statement_cache_size=0`` behind a transaction-mode PgBouncer older than 1.21: asyncpg then
    prepares every statement unnamed, in the same transaction as its execution."""

    async def attempt() -> asyncpg.Pool:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_keep_session,
            command_timeout=60,
            statement_cache_size=statement_cache_size,
        )
        assert pool is not None
        return pool

    return await _retrying("pool", attempt, retry_s)
