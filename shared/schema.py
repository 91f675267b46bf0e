"""The migration runner: numbered ``shared/migrations/*.sql`` files, applied once each, in order.

* **Checksummed.** Each applied migration is recorded with the SHA-256 of its text; a file that
  changed after it was applied is refused (``ChecksumMismatch``) before anything runs — fix
  forward with a new migration instead. Rows recorded before checksums existed adopt the current
  file's checksum on the first run.
* **Non-transactional steps.** A file whose first line is ``-- wce:no-transaction`` runs outside a
  transaction, one step at a time (steps are separated by lines ``-- wce:step``), so it can use
  ``CREATE INDEX CONCURRENTLY`` without locking live tables. Such a file is recorded only after
  its last step: every step must be safe to run again (``IF NOT EXISTS``, and
  ``DROP INDEX CONCURRENTLY IF EXISTS`` before a ``CREATE INDEX CONCURRENTLY`` that a failed run
  may have left invalid).
* **Safe behind a transaction-mode pooler.** No session state is kept across transactions: the
  runners of several replicas exclude each other with a lease row (``schema_migrations_lock``,
  renewed by a heartbeat on a second connection, taken over when its holder stops renewing), and
  each transactional migration also takes a transaction-scoped advisory lock and re-checks that it
  is still pending inside its own transaction.
* **Privileges re-applied.** After the migrations, ``shared/privileges.sql`` (the runtime
  roles' grants, revoked and granted again) runs in one transaction on every run, so a table
  added by a migration gets its grants in that one file.
* **Run explicitly.** ``python -m shared.migrate`` (``make migrate``, the deployment's one-off
  job) connects as the owner role (``WCE_MIGRATION_DATABASE_URL``); services apply migrations at
  start only while ``WCE_MIGRATE_AT_START`` is true (the development default).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import asyncpg

from shared.db import connect_with_retry
from shared.logging import get_logger

log = get_logger(__name__)

NO_TRANSACTION_DIRECTIVE = "-- wce:no-transaction"
STEP_SEPARATOR = "-- wce:step"
# Transaction-scoped, so it never outlives the transaction that a pooler hands back.
MIGRATION_XACT_LOCK_KEY = 7_340_001
LOCK_LEASE_S = 30.0


class MigrationError(RuntimeError):
    pass


class ChecksumMismatch(MigrationError):
    pass


class MigrationLockTimeout(MigrationError):
    pass


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return checksum(self.sql)

    @property
    def transactional(self) -> bool:
        first_line = self.sql.lstrip().split("\n", 1)[0].strip()
        return first_line != NO_TRANSACTION_DIRECTIVE

    @property
    def steps(self) -> list[str]:
        """The statements run one by one outside a transaction (a non-transactional file)."""
        parts: list[list[str]] = [[]]
        for line in self.sql.replace("\r\n", "\n").split("\n"):
            if line.strip() == STEP_SEPARATOR:
                parts.append([])
            elif line.strip() != NO_TRANSACTION_DIRECTIVE:
                parts[-1].append(line)
        return [text for text in ("\n".join(part).strip() for part in parts) if _has_sql(text)]


def _has_sql(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.split("\n"))


def checksum(sql: str) -> str:
    """SHA-256 of the text with line endings normalised (a checkout on Windows is not a change)."""
    return hashlib.sha256(sql.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """The migrations in name order: the packaged ones, or those of ``folder`` (tests)."""
    if folder is not None:
        paths = sorted(folder.glob("*.sql"))
        return [Migration(path.name, path.read_text(encoding="utf-8")) for path in paths]
    package = resources.files("shared") / "migrations"
    names = sorted(entry.name for entry in package.iterdir() if entry.name.endswith(".sql"))
    return [Migration(name, (package / name).read_text(encoding="utf-8")) for name in names]


def mismatched(migrations: Sequence[Migration], recorded: dict[str, str | None]) -> list[str]:
    """Names of applied migrations whose file no longer has the checksum recorded for it."""
    return [
        m.name
        for m in migrations
        if m.name in recorded and recorded[m.name] is not None and recorded[m.name] != m.checksum
    ]


_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text",
    "CREATE TABLE IF NOT EXISTS schema_migrations_lock ("
    " id int PRIMARY KEY CHECK (id = 1), holder text NOT NULL, expires_at timestamptz NOT NULL)",
)

_TAKE_LOCK = """
INSERT INTO schema_migrations_lock AS l (id, holder, expires_at)
VALUES (1, $1, now() + make_interval(secs => $2))
ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
WHERE l.expires_at < now() OR l.holder = EXCLUDED.holder
RETURNING holder
"""
_RENEW_LOCK = """
UPDATE schema_migrations_lock SET expires_at = now() + make_interval(secs => $2)
WHERE id = 1 AND holder = $1
"""
_RELEASE_LOCK = "DELETE FROM schema_migrations_lock WHERE id = 1 AND holder = $1"


async def _create_bookkeeping(conn: asyncpg.Connection) -> None:
    # Only when missing: DDL on a present table would queue for an exclusive lock behind a
    # running migration's transaction (and block every reader behind it).
    present = await conn.fetchval(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND (table_name, column_name) IN"
        " (('schema_migrations', 'checksum'), ('schema_migrations_lock', 'holder'))"
    )
    if present == 2:
        return
    for statement in _BOOKKEEPING:
        # Two runners creating the same table at once: the slower one fails on the catalog's
        # unique index, or on the table's row type that the other has just created; the table
        # then exists, which is all this needs.
        with contextlib.suppress(
            asyncpg.UniqueViolationError, asyncpg.DuplicateTableError, asyncpg.DuplicateObjectError
        ):
            await conn.execute(statement)


@contextlib.asynccontextmanager
async def migration_lock(
    conn: asyncpg.Connection,
    heartbeat_conn: asyncpg.Connection,
    *,
    wait_s: float,
    lease_s: float = LOCK_LEASE_S,
) -> AsyncIterator[str]:
    """Hold the lease row while the body runs; raise ``MigrationLockTimeout`` after ``wait_s``."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while await conn.fetchval(_TAKE_LOCK, holder, lease_s) is None:
        if loop.time() > deadline:
            current = await conn.fetchrow("SELECT holder, expires_at FROM schema_migrations_lock")
            raise MigrationLockTimeout(
                f"another migration run holds the lock ({dict(current) if current else 'released'}); "
                f"waited {wait_s:.0f}s"
            )
        await asyncio.sleep(0.5)
    lost = asyncio.Event()

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(lease_s / 3)
            if await heartbeat_conn.execute(_RENEW_LOCK, holder, lease_s) != "UPDATE 1":
                lost.set()
                return

    beat = asyncio.create_task(heartbeat())
    try:
        yield holder
        if lost.is_set():
            raise MigrationError("the migration lock was lost (its lease expired) while migrating")
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await conn.execute(_RELEASE_LOCK, holder)


PRIVILEGES = (resources.files("shared") / "privileges.sql").read_text(encoding="utf-8")


async def _has_service_roles(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM schema_migrations WHERE name = '0850_service_roles.sql'"))


async def _recorded(conn: asyncpg.Connection) -> dict[str, str | None]:
    rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
    return {row["name"]: row["checksum"] for row in rows}


async def _apply_transactional(conn: asyncpg.Connection, migration: Migration) -> bool:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_XACT_LOCK_KEY)
        if await conn.fetchval("SELECT 1 FROM schema_migrations WHERE name = $1", migration.name):
            return False
        await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
            migration.name,
            migration.checksum,
        )
    return True


async def _apply_steps(conn: asyncpg.Connection, migration: Migration) -> bool:
    if await conn.fetchval("SELECT 1 FROM schema_migrations WHERE name = $1", migration.name):
        return False
    for index, step in enumerate(migration.steps, start=1):
        log.info("migration step", migration=migration.name, step=index)
        await conn.execute(step)
    await conn.execute(
        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        migration.name,
        migration.checksum,
    )
    return True


async def migrate(
    conn: asyncpg.Connection,
    heartbeat_conn: asyncpg.Connection,
    migrations: Sequence[Migration] | None = None,
    *,
    lock_wait_s: float = 600.0,
    lease_s: float = LOCK_LEASE_S,
    privileges: str | None = None,
) -> list[str]:
    """Apply pending migrations and the runtime roles' privileges; return the names applied now.
    Refuses changed applied files. ``privileges`` defaults to ``shared/privileges.sql`` once the
    migration creating the roles has run ("" applies none: tests of the runner itself)."""
    migrations = list(load_migrations() if migrations is None else migrations)
    await _create_bookkeeping(conn)
    async with migration_lock(conn, heartbeat_conn, wait_s=lock_wait_s, lease_s=lease_s):
        recorded = await _recorded(conn)
        changed = mismatched(migrations, recorded)
        if changed:
            raise ChecksumMismatch(
                "applied migrations changed since they were applied (add a new migration instead): "
                + ", ".join(changed)
            )
        by_name = {m.name: m for m in migrations}
        for name, stored in recorded.items():
            if stored is None and name in by_name:
                await conn.execute(
                    "UPDATE schema_migrations SET checksum = $2 WHERE name = $1 AND checksum IS NULL",
                    name,
                    by_name[name].checksum,
                )
                log.info("migration checksum recorded", migration=name)
        applied_now: list[str] = []
        for migration in migrations:
            if migration.name in recorded:
                continue
            apply = _apply_transactional if migration.transactional else _apply_steps
            if await apply(conn, migration):
                applied_now.append(migration.name)
                log.info("migration applied", migration=migration.name)
        if privileges is None and await _has_service_roles(conn):
            privileges = PRIVILEGES
        if privileges:
            async with conn.transaction():
                await conn.execute(privileges)
        return applied_now


async def pending(conn: asyncpg.Connection, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Names not applied yet (no lock, no change): what ``python -m shared.migrate --check`` reports."""
    migrations = list(load_migrations() if migrations is None else migrations)
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    recorded = await _recorded(conn) if exists else {}
    changed = mismatched(migrations, recorded)
    if changed:
        raise ChecksumMismatch("applied migrations changed since they were applied: " + ", ".join(changed))
    return [m.name for m in migrations if m.name not in recorded]


async def ensure_database(dsn: str, *, retry_s: float) -> None:
    """Create the database when the server has none of that name (development, CI).

    The target is tried first, so a role without access to the ``postgres`` maintenance database
    (or without CREATEDB) never needs it once the database exists."""
    try:
        conn = await connect_with_retry(dsn, retry_s=retry_s)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    parsed = urlparse(dsn)
    name = parsed.path.lstrip("/")
    admin = await connect_with_retry(urlunparse(parsed._replace(path="/postgres")), retry_s=retry_s)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await admin.execute(f'CREATE DATABASE "{name}"')
            log.info("database created", database=name)
    finally:
        await admin.close()


async def migrate_dsn(
    dsn: str,
    *,
    retry_s: float = 60.0,
    create_database: bool = True,
    folder: Path | None = None,
    lock_wait_s: float = 600.0,
    statement_cache_size: int = 100,
) -> list[str]:
    """Connect (waiting up to ``retry_s``), optionally create the database, and migrate."""
    if create_database:
        await ensure_database(dsn, retry_s=retry_s)
    conn = await connect_with_retry(dsn, retry_s=retry_s, statement_cache_size=statement_cache_size)
    try:
        heartbeat_conn = await connect_with_retry(
            dsn, retry_s=retry_s, statement_cache_size=statement_cache_size
        )
        try:
            return await migrate(conn, heartbeat_conn, load_migrations(folder), lock_wait_s=lock_wait_s)
        finally:
            await heartbeat_conn.close()
    finally:
        await conn.close()


async def wait_for_schema(pool: asyncpg.Pool, *, retry_s: float) -> None:
    """Wait until every migration this code knows is applied (by the migration job, which starts
    beside the services in a deployment); fail after ``retry_s`` naming what is missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_s
    while True:
        async with pool.acquire() as conn:
            missing = await pending(conn)
        if not missing:
            return
        if loop.time() > deadline:
            raise MigrationError(
                f"the database lacks migrations {', '.join(missing)}: run `python -m shared.migrate` "
                "as the owner role (WCE_MIGRATE_AT_START is false)"
            )
        log.warning("waiting for migrations", pending=", ".join(missing))
        await asyncio.sleep(2.0)
