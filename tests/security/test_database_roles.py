"""Least-privilege database roles: each service's runtime role may write only what its service
owns, none may change the schema, every table has its grants decided, and the engine's own
processes connect as non-superusers."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg
import pytest

from tests.support import IsolatedEnvironment

SERVICES = ("segmenter", "tracker", "dispatcher", "sender")


@pytest.fixture(scope="module")
async def as_service(pool: asyncpg.Pool, isolated_env: IsolatedEnvironment) -> AsyncIterator[dict[str, str]]:
    """A login role per service (a member of wce_<service>, as a deployment creates), by URL."""
    prefix = f"wce_login_{uuid.uuid4().hex[:10]}"
    urls = {}
    for service in SERVICES:
        await pool.execute(f'CREATE ROLE "{prefix}_{service}" LOGIN IN ROLE wce_{service}')
        urls[service] = isolated_env.database_url.replace("postgres@", f"{prefix}_{service}@")
    try:
        yield urls
    finally:
        for service in SERVICES:
            await pool.execute(f'DROP ROLE IF EXISTS "{prefix}_{service}"')


async def attempt(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(sql)
            raise _RolledBack
    except _RolledBack:
        pass
    finally:
        await conn.close()


class _RolledBack(Exception):
    """Raised to roll back a write that was allowed (tests must not change shared data)."""


async def test_the_tracker_writes_no_tenants_api_keys_or_campaigns(as_service: dict[str, str]) -> None:
    for sql in (
        "INSERT INTO tenants (name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from)"
        " VALUES ('x', 'AC', 'x', '+1')",
        "UPDATE tenants SET name = name",
        "DELETE FROM api_keys",
        "UPDATE campaigns SET state = state",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await attempt(as_service["tracker"], sql)
    # but it does write what it owns
    await attempt(as_service["tracker"], "UPDATE recipients SET state = state")
    await attempt(as_service["tracker"], "DELETE FROM message_events")


async def test_the_dispatcher_writes_nothing(pool: asyncpg.Pool, as_service: dict[str, str]) -> None:
    tables = [
        row["tablename"]
        for row in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ]
    for table in tables:
        column = await _plain_column(pool, table)
        for sql in (
            f"DELETE FROM {table}",
            f"UPDATE {table} SET {column} = {column}",
            f"INSERT INTO {table} DEFAULT VALUES",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await attempt(as_service["dispatcher"], sql)
    await attempt(as_service["dispatcher"], "SELECT count(*) FROM tenants")


async def test_the_sender_writes_send_state_but_no_tenants_campaigns_or_booking_data(
    as_service: dict[str, str],
) -> None:
    for sql in (
        "UPDATE tenants SET name = name",
        "UPDATE campaigns SET state = state",
        "DELETE FROM customers",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await attempt(as_service["sender"], sql)
    await attempt(as_service["sender"], "UPDATE recipients SET state = state")


async def test_no_runtime_role_can_change_the_schema_or_the_migration_record(
    as_service: dict[str, str],
) -> None:
    for url in as_service.values():
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await attempt(url, "CREATE TABLE sneaky (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await attempt(url, "ALTER TABLE recipients ADD COLUMN sneaky int")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await attempt(url, "DELETE FROM schema_migrations")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await attempt(url, "SELECT * FROM schema_migrations_lock")


async def test_every_table_has_its_grants_decided_in_the_privileges_file(pool: asyncpg.Pool) -> None:
    privileges = (resources.files("shared") / "privileges.sql").read_text(encoding="utf-8").lower()
    statements, _, owner_only = privileges.partition("-- tables not listed above")
    code = "\n".join(line for line in statements.splitlines() if not line.lstrip().startswith("--"))
    mentioned = set(re.findall(r"[a-z_]+", code)) | set(re.findall(r"[a-z_]+", owner_only))
    tables = {
        row["tablename"]
        for row in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    undecided = sorted(tables - mentioned)
    assert not undecided, (
        f"tables without a decision in shared/privileges.sql: {', '.join(undecided)}. Add a GRANT there for "
        "each service role that writes them (GRANT INSERT, UPDATE ON <table> TO wce_<service>; every role "
        "already reads every table), or name the table in its closing comment when only the owner uses it"
    )


async def test_the_engines_processes_connect_as_non_superusers(
    pool: asyncpg.Pool, isolated_env: IsolatedEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.support import Stack

    stack = Stack(env=isolated_env.env(), log_dir=tmp_path_factory.mktemp("roles"), senders=1)
    try:
        stack.start()
        rows = await pool.fetch(
            "SELECT DISTINCT a.usename, r.rolsuper FROM pg_stat_activity a"
            " JOIN pg_roles r ON r.rolname = a.usename"
            " WHERE a.datname = current_database() AND a.usename LIKE $1",
            f"{stack.login_prefix}%",
        )
        assert {row["usename"] for row in rows} == {f"{stack.login_prefix}_{s}" for s in SERVICES}
        assert not any(row["rolsuper"] for row in rows)
    finally:
        stack.stop()


async def _plain_column(pool: asyncpg.Pool, table: str) -> str:
    name: str = await pool.fetchval(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1"
        " AND is_identity = 'NO' AND is_generated = 'NEVER' ORDER BY ordinal_position LIMIT 1",
        table,
    )
    return name
