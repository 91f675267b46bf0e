"""asyncpg connections and pools that wait for the database at start.

Start-up waits up to ``WCE_STARTUP_RETRY_S`` while the server cannot take the connection yet
(refused, starting up, shutting down, ``too many clients``, a role's connection limit); it fails
at once on what waiting cannot fix (a wrong password, a role that may not log in). The migration
runner is ``shared/schema.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar
from uuid import UUID

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


# Row-level security (migration 1000): a runtime role sees and writes the rows of the tenant named
# by this transaction-local setting, and nothing when it is unset. A transaction that works for one
# tenant names it with ``tenant_transaction``; one that deliberately spans tenants (maintenance,
# sweeps, metrics sampling, authentication by key hash, batches of callbacks) takes the service's
# cross-tenant role with ``all_tenants_transaction``.
TENANT_SETTING = "wce.tenant_id"

# Sent as one simple-protocol message with the BEGIN, so naming the tenant costs no round trip of
# its own: a path that already ran in a transaction sends exactly what it sent before. The tenant
# id is a canonical UUID (``UUID(...)`` refuses anything else), so it is safe as a literal.
_BEGIN_FOR_TENANT = (
    "BEGIN{mode}; " + "{idle}; " + "SELECT set_config('" + TENANT_SETTING + "', '{tenant}', true)"
)

# A process frozen (or starved) inside one of these explicit transactions would keep its row locks
# for as long as it stays frozen, and every other process writing those rows would wait behind it:
# the server ends such a transaction once it has sat idle this long. No path of the services waits
# on anything but its own statements inside a transaction, so this is far above any real pause.
_IDLE_LIMIT = "SET LOCAL idle_in_transaction_session_timeout = '20s'"

# The service's cross-tenant role is the one ``wce_<service>_all_tenants`` role (BYPASSRLS, the
# service's own grants; shared/privileges.sql) its login may switch to. Found by membership, so the
# same code serves every service, once per login and process (the lookup costs more than the
# transaction it would start); a superuser or the schema owner (not subject to row-level
# security) keeps its own identity.
CROSS_TENANT_ROLES = frozenset(
    {
        "wce_segmenter_all_tenants",
        "wce_tracker_all_tenants",
        "wce_sender_all_tenants",
        "wce_dispatcher_all_tenants",
    }
)
FIND_CROSS_TENANT_ROLE = """
SELECT r.rolname FROM pg_roles r
WHERE r.rolname = ANY($1::text[]) AND pg_has_role(r.rolname, 'MEMBER')
  AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)
ORDER BY r.rolname LIMIT 1"""
_cross_tenant_role: dict[str, str] = {}  # login -> its cross-tenant role ("" when none applies)

# A pool (a connection is taken for the transaction) or a connection, pooled or not.
Connectable: TypeAlias = "asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy"


@contextlib.asynccontextmanager
async def tenant_transaction(
    source: Connectable, tenant_id: UUID | str, *, readonly: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction in which the runtime roles see and write ``tenant_id``'s rows only.

    ``source`` is a pool (a connection is taken for the transaction) or a connection not in a
    transaction. Inside, use the connection's own statements; ``conn.transaction()`` would be
    refused by asyncpg (the transaction is begun here, together with the tenant setting)."""
    begin = _BEGIN_FOR_TENANT.format(
        mode=" READ ONLY" if readonly else "", idle=_IDLE_LIMIT, tenant=UUID(str(tenant_id))
    )
    async with _transaction(source, begin) as conn:
        yield conn


async def set_tenant(conn: asyncpg.Connection, tenant_id: UUID | str) -> None:
    """Name the tenant inside a transaction already begun (one round trip): for a transaction
    that learns its tenant on the way, e.g. the one creating it."""
    await conn.execute(SET_TENANT, str(UUID(str(tenant_id))))


SET_TENANT = "SELECT set_config('" + TENANT_SETTING + "', $1, true)"


@contextlib.asynccontextmanager
async def all_tenants_transaction(
    source: Connectable, *, readonly: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction of a deliberately cross-tenant path, as the service's cross-tenant role.
    Every caller is listed in shared/privileges.sql's header and the README's security section."""
    mode = " READ ONLY" if readonly else ""

    async def begin(conn: asyncpg.Connection) -> str:
        role = await _role_for_all_tenants(conn)
        return f"BEGIN{mode}; {_IDLE_LIMIT}; SET LOCAL ROLE {role}" if role else f"BEGIN{mode}; {_IDLE_LIMIT}"

    async with _transaction(source, begin) as conn:
        yield conn


async def _role_for_all_tenants(conn: asyncpg.Connection) -> str:
    login = getattr(conn.get_settings(), "session_authorization", None)
    role = _cross_tenant_role.get(login) if login else None
    if role is None:
        role = await conn.fetchval(FIND_CROSS_TENANT_ROLE, sorted(CROSS_TENANT_ROLES)) or ""
        if role and role not in CROSS_TENANT_ROLES:  # never: the query picks among these names
            raise RuntimeError(f"unexpected cross-tenant role {role!r}")
        if login:
            _cross_tenant_role[login] = role
    return role


@contextlib.asynccontextmanager
async def _transaction(
    source: Connectable, begin: str | Callable[[asyncpg.Connection], Awaitable[str]]
) -> AsyncIterator[asyncpg.Connection]:
    if hasattr(source, "acquire"):  # a pool (or a stand-in for one); a connection has no acquire
        async with source.acquire() as conn:
            async with _transaction(conn, begin) as inner:
                yield inner
        return
    conn = source
    await conn.execute(begin if isinstance(begin, str) else await begin(conn))
    try:
        yield conn  # type: ignore[misc]
    except BaseException:
        if not conn.is_closed():
            # A broken connection cannot roll back; the pool discards it either way.
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


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


class AllTenants:
    """Single statements of a deliberately cross-tenant path, each in an all-tenants transaction
    of its own (``all_tenants_transaction``): for background passes that read or write across
    tenants one statement at a time."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def fetch(self, sql: str, *args: object, timeout_s: float | None = None) -> list[asyncpg.Record]:
        async with all_tenants_transaction(self._pool) as conn:
            return await conn.fetch(sql, *args, timeout=timeout_s)

    async def fetchrow(
        self, sql: str, *args: object, timeout_s: float | None = None
    ) -> asyncpg.Record | None:
        async with all_tenants_transaction(self._pool) as conn:
            return await conn.fetchrow(sql, *args, timeout=timeout_s)

    async def fetchval(self, sql: str, *args: object, timeout_s: float | None = None) -> Any:
        async with all_tenants_transaction(self._pool) as conn:
            return await conn.fetchval(sql, *args, timeout=timeout_s)

    async def execute(self, sql: str, *args: object, timeout_s: float | None = None) -> str:
        async with all_tenants_transaction(self._pool) as conn:
            return await conn.execute(sql, *args, timeout=timeout_s)


class OneTenant:
    """Single statements for one tenant, each in a ``tenant_transaction`` of its own: the
    statement-at-a-time paths (a route's one read, a sender's claim) keep their shape."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def fetch(
        self, tenant_id: UUID | str, sql: str, *args: object, timeout_s: float | None = None
    ) -> list[asyncpg.Record]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await conn.fetch(sql, *args, timeout=timeout_s)

    async def fetchrow(
        self, tenant_id: UUID | str, sql: str, *args: object, timeout_s: float | None = None
    ) -> asyncpg.Record | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await conn.fetchrow(sql, *args, timeout=timeout_s)

    async def fetchval(
        self, tenant_id: UUID | str, sql: str, *args: object, timeout_s: float | None = None
    ) -> Any:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await conn.fetchval(sql, *args, timeout=timeout_s)

    async def execute(
        self, tenant_id: UUID | str, sql: str, *args: object, timeout_s: float | None = None
    ) -> str:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await conn.execute(sql, *args, timeout=timeout_s)
