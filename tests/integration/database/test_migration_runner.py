"""The migration runner on the real database: checksums, non-transactional steps, the lease lock
that keeps concurrent runners apart without session state, and waiting services."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from shared import schema
from shared.db import create_pool
from shared.schema import (
    ChecksumMismatch,
    Migration,
    MigrationError,
    MigrationLockTimeout,
    load_migrations,
    migrate,
    migrate_dsn,
    pending,
    wait_for_schema,
)


def write(folder: Path, name: str, sql: str) -> None:
    (folder / name).write_text(sql, encoding="utf-8")


async def test_a_changed_applied_migration_is_refused_and_nothing_else_runs(
    scratch_database: str, tmp_path: Path
) -> None:
    # Given a migration that was applied
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
    assert await migrate_dsn(scratch_database, folder=tmp_path, create_database=False) == ["0001_a.sql"]
    # When its file changes and a new migration is added
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id bigint);")
    write(tmp_path, "0002_b.sql", "CREATE TABLE b (id int);")
    # Then the run is refused naming the changed file, and the new migration is not applied
    with pytest.raises(ChecksumMismatch, match=r"0001_a\.sql"):
        await migrate_dsn(scratch_database, folder=tmp_path, create_database=False)
    conn = await asyncpg.connect(scratch_database)
    try:
        assert await conn.fetchval("SELECT to_regclass('b')") is None
        with pytest.raises(ChecksumMismatch):
            await pending(conn, load_migrations(tmp_path))
    finally:
        await conn.close()


async def test_line_endings_alone_are_not_a_change(scratch_database: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);\nCREATE TABLE c (id int);\n")
    await migrate_dsn(scratch_database, folder=tmp_path, create_database=False)
    (tmp_path / "0001_a.sql").write_bytes(b"CREATE TABLE a (id int);\r\nCREATE TABLE c (id int);\r\n")
    assert await migrate_dsn(scratch_database, folder=tmp_path, create_database=False) == []


async def test_rows_recorded_before_checksums_adopt_the_current_file(
    scratch_database: str, tmp_path: Path
) -> None:
    # Given an installation migrated by the runner that recorded names only
    conn = await asyncpg.connect(scratch_database)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
            "CREATE TABLE a (id int); INSERT INTO schema_migrations (name) VALUES ('0001_a.sql')"
        )
        write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
        # When the checksumming runner runs
        applied = await migrate_dsn(scratch_database, folder=tmp_path, create_database=False)
        # Then nothing is re-applied and the checksum is recorded, so a later change is refused
        assert applied == []
        stored = await conn.fetchval("SELECT checksum FROM schema_migrations WHERE name = '0001_a.sql'")
        assert stored == Migration("0001_a.sql", "CREATE TABLE a (id int);").checksum
    finally:
        await conn.close()
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int, x int);")
    with pytest.raises(ChecksumMismatch):
        await migrate_dsn(scratch_database, folder=tmp_path, create_database=False)


async def test_a_no_transaction_migration_builds_an_index_concurrently(
    scratch_database: str, tmp_path: Path
) -> None:
    # Given a table, then a migration that must run outside a transaction
    write(tmp_path, "0001_t.sql", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);")
    write(
        tmp_path,
        "0002_t_index.sql",
        "-- wce:no-transaction\n"
        "DROP INDEX CONCURRENTLY IF EXISTS t_id;\n"
        "-- wce:step\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_id ON t (id);\n",
    )
    # When migrating
    applied = await migrate_dsn(scratch_database, folder=tmp_path, create_database=False)
    # Then the index exists, is valid, and the migration is recorded once with its checksum
    assert applied == ["0001_t.sql", "0002_t_index.sql"]
    conn = await asyncpg.connect(scratch_database)
    try:
        valid = await conn.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('t_id')")
        assert valid is True
        assert await pending(conn, load_migrations(tmp_path)) == []
    finally:
        await conn.close()


async def test_a_transactional_file_with_concurrent_index_fails_and_is_not_recorded(
    scratch_database: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_t.sql", "CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY t_id ON t (id);")
    with pytest.raises(asyncpg.ActiveSQLTransactionError):
        await migrate_dsn(scratch_database, folder=tmp_path, create_database=False)
    conn = await asyncpg.connect(scratch_database)
    try:
        assert await conn.fetchval("SELECT to_regclass('t')") is None
        assert await pending(conn, load_migrations(tmp_path)) == ["0001_t.sql"]
    finally:
        await conn.close()


async def test_concurrent_runners_apply_each_migration_once(scratch_database: str, tmp_path: Path) -> None:
    # Given migrations whose second application would fail (a plain CREATE TABLE)
    for number in range(1, 6):
        write(tmp_path, f"000{number}_m.sql", f"CREATE TABLE m{number} (id int); SELECT pg_sleep(0.05);")
    # When five runners start at once (five replicas starting together)
    results = await asyncio.gather(
        *(migrate_dsn(scratch_database, folder=tmp_path, create_database=False) for _ in range(5))
    )
    # Then every migration was applied exactly once, by one of them
    applied = sorted(name for result in results for name in result)
    assert applied == [f"000{n}_m.sql" for n in range(1, 6)]


async def test_runners_creating_the_bookkeeping_tables_at_once_all_go_on(scratch_database: str) -> None:
    # Given eight runners reaching a database without the bookkeeping tables at the same moment
    # (the catalog refuses the slower ones' CREATE in more than one way; a few rounds make the
    # race near-certain)
    conns = [await asyncpg.connect(scratch_database) for _ in range(8)]
    try:
        for _ in range(25):
            await conns[0].execute("DROP TABLE IF EXISTS schema_migrations, schema_migrations_lock")
            # When each creates them
            results = await asyncio.gather(
                *(schema._create_bookkeeping(conn) for conn in conns), return_exceptions=True
            )
            # Then none fails: the tables exist, which is all each of them needs
            assert [r for r in results if isinstance(r, BaseException)] == []
    finally:
        for conn in conns:
            await conn.close()


async def test_a_lock_whose_holder_stopped_renewing_is_taken_over(
    scratch_database: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
    conn = await asyncpg.connect(scratch_database)
    beat = await asyncpg.connect(scratch_database)
    try:
        # Given a runner that holds the lock and died without releasing it (lease 1 s)
        await migrate(conn, beat, [], lease_s=1.0)
        await conn.execute(
            "INSERT INTO schema_migrations_lock (id, holder, expires_at)"
            " VALUES (1, 'dead-runner', now() + interval '1 second')"
        )
        # When another runner wants it only briefly, it is refused naming the holder
        with pytest.raises(MigrationLockTimeout, match="dead-runner"):
            await migrate(conn, beat, load_migrations(tmp_path), lock_wait_s=0.2)
        # Then once the lease has run out, the next runner takes it over and migrates
        assert await migrate(conn, beat, load_migrations(tmp_path), lock_wait_s=5) == ["0001_a.sql"]
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations_lock") == 0
    finally:
        await conn.close()
        await beat.close()


async def test_a_long_migration_keeps_its_lock_past_the_lease(scratch_database: str, tmp_path: Path) -> None:
    # Given a migration that takes longer than the lease
    write(tmp_path, "0001_slow.sql", "SELECT pg_sleep(2.5); CREATE TABLE slow (id int);")
    conn = await asyncpg.connect(scratch_database)
    beat = await asyncpg.connect(scratch_database)
    other = await asyncpg.connect(scratch_database)
    other_beat = await asyncpg.connect(scratch_database)
    try:
        running = asyncio.create_task(migrate(conn, beat, load_migrations(tmp_path), lease_s=1.0))
        await asyncio.sleep(1.8)
        # When a second runner tries meanwhile, the heartbeat has kept the lease: it must wait
        with pytest.raises(MigrationLockTimeout):
            await migrate(other, other_beat, load_migrations(tmp_path), lock_wait_s=0.3, lease_s=1.0)
        # Then the first one finishes normally
        assert await running == ["0001_slow.sql"]
    finally:
        for c in (conn, beat, other, other_beat):
            await c.close()


async def test_the_packaged_migrations_apply_to_an_empty_database_and_then_are_current(
    scratch_database: str,
) -> None:
    applied = await migrate_dsn(scratch_database, create_database=False)
    assert applied == [m.name for m in load_migrations()]
    assert await migrate_dsn(scratch_database, create_database=False) == []


async def test_a_service_that_does_not_migrate_waits_for_the_migration_job(
    scratch_database: str, tmp_path: Path
) -> None:
    pool = await create_pool(scratch_database, min_size=1, max_size=2)
    try:
        # Given a database nobody has migrated, a service that does not migrate gives up naming it
        with pytest.raises(MigrationError, match=r"shared\.migrate"):
            await wait_for_schema(pool, retry_s=0.1)
        # When the migration job runs while the service waits, the service goes on
        waiting = asyncio.create_task(wait_for_schema(pool, retry_s=30))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await migrate_dsn(scratch_database, create_database=False)
        await asyncio.wait_for(waiting, timeout=10)
    finally:
        await pool.close()


def run_migrate_command(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.migrate", *args],
        env={**os.environ, "WCE_DATABASE_URL": database_url, "WCE_STARTUP_RETRY_S": "5"},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_migrate_command_checks_applies_and_refuses(scratch_database: str) -> None:
    # Given an empty database, --check lists what is pending and fails
    checked = run_migrate_command(scratch_database, "--check")
    assert checked.returncode == 1 and "0001_init.sql" in checked.stdout
    # When the command runs, it applies them, and --check then passes
    applied = run_migrate_command(scratch_database)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert run_migrate_command(scratch_database, "--check").returncode == 0
    # Then a tampered record of an applied migration makes it refuse, naming the file
    conn = await asyncpg.connect(scratch_database)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE name = '0001_init.sql'")
    finally:
        await conn.close()
    refused = run_migrate_command(scratch_database)
    assert refused.returncode == 2 and "0001_init.sql" in refused.stdout
