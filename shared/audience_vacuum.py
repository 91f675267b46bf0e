"""``python -m shared.audience_vacuum``: the audience tables vacuumed right after a bulk load.

The audience queries count from covering indexes, and an index-only scan spares the table only on
pages the visibility map marks all-visible. Only VACUUM sets that map: on the benchmark's million
customers loaded and analysed but not vacuumed, previews stayed 2–13× slower than after it, every
index entry fetching its table page. Autovacuum gets there (migration 1501 has it come after
inserts of 1 % of a table), but at its own pace, and not at all where it is turned off. VACUUM
needs the table's owner (PostgreSQL 16 and older have no grantable MAINTAIN privilege) and cannot
run inside a function or a transaction, so the segmenter, which owns nothing, cannot do it the way
it analyses (migration 1500). This small process holds the owner's credentials instead (the
migration URL) and nothing else: it serves no port, takes no input but the names of the tables to
vacuum, and vacuums only the audience tables.

- **On request**: the segmenter, after bulk writes (or before a read, for data loaded another
  way) that leave an audience table with ``VACUUM_AFTER_ROWS`` rows on pages not all-visible,
  sends ``NOTIFY wce_audience_vacuum, '<table>,<table>'`` and waits, up to a bound, for the
  table's vacuum count to move: the importer pays, not the next preview.
- **On its own**: every ``SWEEP_INTERVAL_S``, the same rule on the tables' counters catches what
  a missed notification (this process down or restarting) left behind.

Other tenants: VACUUM takes SHARE UPDATE EXCLUSIVE, which blocks no read or write; it never
truncates the table here (the truncation takes ACCESS EXCLUSIVE, which would); it waits at most
``LOCK_TIMEOUT`` for an analysis in the way and tries again at the next request or sweep. A vacuum
after inserts reads only the pages not all-visible yet: its cost is about the pages just written,
plus one pass over the indexes where rows were deleted. That pass is forced (``INDEX_CLEANUP on``):
by default PostgreSQL skips it when few pages hold dead rows, and a page keeping a dead row's
item is never marked all-visible, so new rows written beside an old delete (a tenant's import
after a clean-up) stayed on pages every index-only scan visits.

    python -m shared.audience_vacuum [--exit-after SECONDS]
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Annotated

import asyncpg
import typer

from shared.db import connect_with_retry
from shared.logging import configure_logging, get_logger
from shared.settings import get_settings

log = get_logger(__name__)

CHANNEL = "wce_audience_vacuum"
# How the segmenter knows someone listens before it waits for a vacuum.
APPLICATION_NAME = "wce-audience-vacuum"
# The tables the preview and snapshot queries read; nothing else is ever vacuumed here.
AUDIENCE_TABLES = (
    "appointment_statuses",
    "appointments",
    "customers",
    "locations",
    "services",
    "suppressions",
)
# Rows inserted, updated or deleted since the last vacuum (each leaves its page not all-visible)
# past which a table is vacuumed. Not a share of the table: a new tenant's rows are all on pages
# not all-visible however large the table is, and the vacuum's cost follows those pages only.
VACUUM_AFTER_ROWS = 10_000
# The same judged by pages, where the counters cannot tell (about 50 rows to a page).
VACUUM_AFTER_PAGES = 200
SWEEP_INTERVAL_S = 60.0
# Notifications arriving this close together are served by one round.
COALESCE_S = 0.2
LOCK_TIMEOUT = "30s"

TABLE_COUNTERS = """
SELECT c.relname AS name, c.relpages::bigint AS pages, c.relallvisible::bigint AS all_visible_pages,
       coalesce(s.n_ins_since_vacuum + s.n_dead_tup, 0) AS changed,
       coalesce(s.vacuum_count + s.autovacuum_count, 0) AS vacuums
FROM pg_class c
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relname = ANY ($1::text[])
ORDER BY c.relname
"""

LISTENING = """
SELECT EXISTS (
    SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1
)
"""


@dataclass(frozen=True)
class VacuumCounters:
    name: str
    pages: int
    all_visible_pages: int
    changed: int
    vacuums: int


def needs_vacuum(table: VacuumCounters, *, written: int = 0) -> bool:
    """Whether ``table`` has enough rows on pages not all-visible to be worth a vacuum now.

    ``written`` is what a writer just committed, which the counters may not show yet. A table the
    counters never saw vacuumed (a database restored from files, counters reset by a crash) is
    judged by its pages as its last analysis or index build counted them."""
    if table.changed + written >= VACUUM_AFTER_ROWS:
        return True
    return table.vacuums == 0 and table.pages - table.all_visible_pages >= VACUUM_AFTER_PAGES


async def vacuum_counters(conn: asyncpg.Connection, tables: list[str] | None = None) -> list[VacuumCounters]:
    rows = await conn.fetch(TABLE_COUNTERS, list(tables or AUDIENCE_TABLES))
    return [
        VacuumCounters(row["name"], row["pages"], row["all_visible_pages"], row["changed"], row["vacuums"])
        for row in rows
    ]


async def listening(conn: asyncpg.Connection) -> bool:
    """Whether a vacuum process is connected to this database to take requests."""
    return bool(await conn.fetchval(LISTENING, APPLICATION_NAME))


def requested_tables(payload: str) -> set[str]:
    """The audience tables a notification names; anything else in it is ignored."""
    return {name.strip() for name in payload.split(",")} & set(AUDIENCE_TABLES)


class AudienceVacuum:
    """One connection as the owner, listening; vacuums run one at a time, in name order."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._requested: set[str] = set()
        self._woken = asyncio.Event()

    async def start(self) -> None:
        await self._conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        await self._conn.add_listener(CHANNEL, self._on_notification)

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._requested |= requested_tables(payload)
        self._woken.set()

    async def run(self, *, until: float) -> None:
        """Serve requests, and sweep every SWEEP_INTERVAL_S, until ``until``. The first sweep waits
        too: a process starting beside segmenters that are analysing a fresh load would otherwise
        hold the tables while they wait to analyse them (ANALYZE and VACUUM exclude each other)."""
        next_sweep = time.monotonic() + SWEEP_INTERVAL_S
        while (now := time.monotonic()) < until:
            if now >= next_sweep:
                await self.sweep()
                next_sweep = time.monotonic() + SWEEP_INTERVAL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), timeout=max(0.0, min(next_sweep, until) - now))
            if self._woken.is_set():
                await asyncio.sleep(COALESCE_S)
                self._woken.clear()
                requested, self._requested = self._requested, set()
                await self.vacuum(sorted(requested))

    async def sweep(self) -> None:
        await self.vacuum([table.name for table in await vacuum_counters(self._conn) if needs_vacuum(table)])

    async def vacuum(self, tables: list[str]) -> None:
        for table in tables:
            if table not in AUDIENCE_TABLES:
                continue
            began = time.perf_counter()
            try:
                # TRUNCATE false: giving back empty pages at the end takes ACCESS EXCLUSIVE.
                # INDEX_CLEANUP on: see the module's docstring (pages with dead items stay not all-visible).
                await self._conn.execute(f"VACUUM (TRUNCATE false, INDEX_CLEANUP on) public.{table}")
            except asyncpg.PostgresError as exc:
                log.warning("audience table not vacuumed", table=table, error=str(exc))
                continue
            log.info("audience table vacuumed", table=table, seconds=round(time.perf_counter() - began, 3))


async def serve(dsn: str, *, exit_after_s: float | None, retry_s: float, statement_cache_size: int) -> None:
    conn = await connect_with_retry(dsn, retry_s=retry_s, statement_cache_size=statement_cache_size)
    try:
        await conn.execute(f"SET application_name = '{APPLICATION_NAME}'")
        worker = AudienceVacuum(conn)
        await worker.start()
        await worker.run(
            until=time.monotonic() + (exit_after_s if exit_after_s is not None else float("inf"))
        )
    finally:
        await conn.close()


cli = typer.Typer(add_completion=False, help=__doc__)


@cli.command()
def main(
    exit_after: Annotated[
        float | None, typer.Option("--exit-after", help="Stop after this many seconds (a scheduled job).")
    ] = None,
) -> None:
    settings = get_settings()
    configure_logging("audience-vacuum", settings.log_level)
    dsn = settings.migration_database_url or settings.database_url
    asyncio.run(
        serve(
            dsn,
            exit_after_s=exit_after,
            retry_s=settings.startup_retry_s,
            statement_cache_size=settings.db_statement_cache_size,
        )
    )


if __name__ == "__main__":
    cli()
