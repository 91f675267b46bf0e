"""Pure parts of the database platform: migration files, checksums, start-up error classification."""

from __future__ import annotations

import asyncpg

from shared.db import is_transient_connect_error
from shared.schema import Migration, checksum, load_migrations, mismatched


def test_a_file_without_the_directive_runs_in_one_transaction() -> None:
    assert Migration("0001_a.sql", "-- a comment\nCREATE TABLE a (id int);").transactional


def test_the_directive_splits_a_file_into_steps_run_alone() -> None:
    migration = Migration(
        "0002_i.sql",
        "-- wce:no-transaction\n-- why: builds on a live table\n"
        "DROP INDEX CONCURRENTLY IF EXISTS i;\n-- wce:step\n\nCREATE INDEX CONCURRENTLY i ON t (x);\n"
        "-- wce:step\n-- only a comment\n",
    )
    assert not migration.transactional
    assert migration.steps == [
        "-- why: builds on a live table\nDROP INDEX CONCURRENTLY IF EXISTS i;",
        "CREATE INDEX CONCURRENTLY i ON t (x);",
    ]


def test_checksums_ignore_line_endings_but_not_content() -> None:
    assert checksum("a;\r\nb;\r\n") == checksum("a;\nb;\n")
    assert checksum("a;\n") != checksum("a; \n")


def test_only_applied_files_with_a_different_checksum_are_mismatched() -> None:
    files = [Migration("1.sql", "a"), Migration("2.sql", "b"), Migration("3.sql", "c")]
    recorded: dict[str, str | None] = {
        "1.sql": checksum("a"),
        "2.sql": checksum("B"),
        "4.sql": "x",
        "3.sql": None,
    }
    assert mismatched(files, recorded) == ["2.sql"]


def test_packaged_migrations_are_numbered_uniquely_in_order() -> None:
    names = [m.name for m in load_migrations()]
    numbers = [name.split("_", 1)[0] for name in names]
    assert names == sorted(names)
    assert len(set(numbers)) == len(numbers), "two migrations share a number"


def test_a_full_server_or_a_starting_one_is_worth_waiting_for() -> None:
    assert is_transient_connect_error(asyncpg.TooManyConnectionsError("sorry, too many clients already"))
    assert is_transient_connect_error(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert is_transient_connect_error(ConnectionRefusedError(111, "refused"))
    assert is_transient_connect_error(TimeoutError())


def test_a_wrong_password_or_a_missing_database_is_not_waited_for() -> None:
    assert not is_transient_connect_error(asyncpg.InvalidPasswordError("password authentication failed"))
    assert not is_transient_connect_error(asyncpg.InvalidCatalogNameError('database "x" does not exist'))
    assert not is_transient_connect_error(ValueError("bad dsn"))
