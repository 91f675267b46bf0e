"""``python -m shared.migrate``: apply pending migrations as the owner role.

The explicit migration command (``make migrate``; the deployment's one-off job). It connects with
``WCE_MIGRATION_DATABASE_URL`` (else ``WCE_DATABASE_URL``), waits up to ``WCE_STARTUP_RETRY_S``
for the server, and refuses to run when an applied migration's file has changed. ``--check``
applies nothing: it lists pending migrations and exits 1 when there are any (a deployment's
pre-flight). ``--create-database`` creates a missing database first (development and CI).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from shared.db import connect_with_retry
from shared.logging import configure_logging
from shared.schema import MigrationError, migrate_dsn, pending
from shared.settings import get_settings

cli = typer.Typer(add_completion=False, help=__doc__)


async def _check(dsn: str, retry_s: float, statement_cache_size: int) -> list[str]:
    conn = await connect_with_retry(dsn, retry_s=retry_s, statement_cache_size=statement_cache_size)
    try:
        return await pending(conn)
    finally:
        await conn.close()


@cli.command()
def main(
    check: Annotated[bool, typer.Option("--check", help="List pending migrations; apply nothing.")] = False,
    create_database: Annotated[
        bool, typer.Option("--create-database", help="Create the database if the server has none.")
    ] = False,
) -> None:
    settings = get_settings()
    configure_logging("migrate", settings.log_level)
    dsn = settings.migration_database_url or settings.database_url
    try:
        if check:
            missing = asyncio.run(_check(dsn, settings.startup_retry_s, settings.db_statement_cache_size))
            print(f"pending migrations: {', '.join(missing) if missing else 'none'}")
            raise typer.Exit(1 if missing else 0)
        applied = asyncio.run(
            migrate_dsn(
                dsn,
                retry_s=settings.startup_retry_s,
                create_database=create_database,
                statement_cache_size=settings.db_statement_cache_size,
            )
        )
    except MigrationError as exc:
        print(f"migration refused: {exc}")
        raise typer.Exit(2) from exc
    print(f"migrations applied: {', '.join(applied) if applied else 'none pending'}")


if __name__ == "__main__":
    cli()
