"""Planner statistics of the audience tables kept fresh, so a preview is fast right after a bulk load.

Right after a large import, before PostgreSQL has analysed the tables, the planner still believes
they hold what they held at their last ANALYZE (nothing, in a new deployment): a preview then took
up to 8.1 s, and 31 ms once the tables were analysed. Autovacuum analyses a table only after
10 % of it changed and at its own pace (and not at all where it is turned off); the audience
queries cannot be written to be blind to statistics (whether the members of a window are a
handful or a million decides between a nested loop and a hash). So the segmenter analyses the
audience tables itself, in two places:

- **after bulk writes** (booking upserts and deletes, the CSV import, the booking event consumer,
  the suppression import): the writer counts the rows it wrote; once it has written
  ``CHECK_AFTER_ROWS`` it reads the tables' counters and analyses those that are stale, after its
  commit and before its answer. The importer pays, not the next preview.
- **before reads** (preview, snapshot): the same check, at most every ``CHECK_INTERVAL_S`` per
  process, covers data loaded any other way (a restore, ``COPY``, a script).

A table is stale when its changes since the last analysis reach ``needs_analyze``'s threshold: a
fraction of its estimated rows, as autovacuum counts, but never more than ``MAX_CHANGED_ROWS``,
because the statistics are shared by all tenants of a table: a new tenant importing a million
customers into a table of fifty million would otherwise stay invisible to the planner (its
tenant id absent from the most common values) until the table grew by five million. The
statistics counters lag up to about a second behind commits, so a writer adds the rows it has
just written to ``n_mod_since_analyze``.

Statistics are half of it. The covering indexes spare the table only on pages the visibility
map marks all-visible, which only VACUUM does, and VACUUM needs the owner and cannot run in a
function: on the benchmark's million customers loaded without VACUUM, previews stayed 2–13×
slower than after it, analysed or not. That half is autovacuum's (migration 1501 has it vacuum the
audience tables after inserts of 1 % of their rows).

The services connect as runtime roles that own no table, and PostgreSQL 15 lets only a table's
owner analyse it; ``analyze_audience_tables`` (migration 1500) is a ``SECURITY DEFINER``
function of the owner that analyses only the audience tables, executable by the segmenter only.

Concurrency: one check runs at a time per process, in a task of its own (a cancelled request
does not cancel an analysis others wait for); requests arriving meanwhile wait for it rather
than start another. Across processes, the function holds an advisory lock per table and skips a
table someone analysed while it waited, so one burst analyses each table once. ANALYZE takes
SHARE UPDATE EXCLUSIVE, which conflicts with no read or write (only with VACUUM, ANALYZE, index
builds and schema changes), so another tenant's reads and writes never wait for it; only a
request that itself checks while an analysis is running waits for that one, which is what it
would need anyway to be planned on fresh statistics. A check that fails (a lock wait past the
function's lock_timeout, a lost connection) is logged and the request goes on with the
statistics it has.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import asyncpg

from services.segmenter import queries
from shared.logging import get_logger

log = get_logger(__name__)

# The tables the preview and snapshot queries read (the function refuses any other).
AUDIENCE_TABLES = (
    "appointment_statuses",
    "appointments",
    "customers",
    "locations",
    "services",
    "suppressions",
)
# Changes since the last analysis that make a table stale: MIN_CHANGED_ROWS plus this share of
# its rows (autovacuum's default scale), capped at MAX_CHANGED_ROWS.
CHANGED_FRACTION = 0.1
MIN_CHANGED_ROWS = 1_000
MAX_CHANGED_ROWS = 200_000
# Writers look at the counters after writing this many rows (smaller writes cost nothing).
CHECK_AFTER_ROWS = MIN_CHANGED_ROWS
# Readers look at the counters at most this often per process.
CHECK_INTERVAL_S = 5.0


def needs_analyze(*, estimated_rows: float, changed: int, written: int = 0) -> bool:
    """Whether a table of ``estimated_rows`` (``pg_class.reltuples``, -1 when never counted) with
    ``changed`` rows modified since its last analysis, plus ``written`` the counters may not show
    yet, needs a new one."""
    threshold = min(MAX_CHANGED_ROWS, MIN_CHANGED_ROWS + CHANGED_FRACTION * max(estimated_rows, 0.0))
    return changed + written >= threshold


@dataclass(frozen=True)
class TableCounters:
    name: str
    estimated_rows: float
    changed: int
    analyses: int


class AudienceStatistics:
    """Per process: when the audience tables were last checked, and rows written since."""

    def __init__(
        self, *, check_interval_s: float = CHECK_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = check_interval_s
        self._clock = clock
        self._checked_at = -math.inf
        self._unchecked: Counter[str] = Counter()
        self._running: asyncio.Task[None] | None = None

    async def before_read(self, pool: asyncpg.Pool) -> None:
        """Analyse stale audience tables first, unless they were checked in the last few seconds."""
        await self._check_while(pool, lambda: self._clock() - self._checked_at >= self._interval)

    async def after_write(self, pool: asyncpg.Pool, written: Mapping[str, int]) -> None:
        """Count rows just committed (table -> rows); past CHECK_AFTER_ROWS, analyse what is stale."""
        self._unchecked.update({table: rows for table, rows in written.items() if table in AUDIENCE_TABLES})
        await self._check_while(pool, lambda: max(self._unchecked.values(), default=0) >= CHECK_AFTER_ROWS)

    async def _check_while(self, pool: asyncpg.Pool, due: Callable[[], bool]) -> None:
        while due():
            running = self._running
            if running is None or running.done():
                running = self._running = asyncio.create_task(self._check(pool))
                await asyncio.shield(running)
                return
            # Another request's check is under way: wait for it, then see whether it covered ours.
            await asyncio.shield(running)

    async def _check(self, pool: asyncpg.Pool) -> None:
        written = Counter(self._unchecked)
        try:
            async with pool.acquire() as conn:
                counters = await table_counters(conn)
                stale = [
                    table
                    for table in counters
                    if needs_analyze(
                        estimated_rows=table.estimated_rows,
                        changed=table.changed,
                        written=written[table.name],
                    )
                ]
                if stale:
                    began = time.perf_counter()
                    analysed = await analyze(conn, stale)
                    log.info(
                        "audience tables analysed",
                        tables=analysed,
                        stale=[table.name for table in stale],
                        seconds=round(time.perf_counter() - began, 3),
                    )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("audience statistics not refreshed", error=str(exc) or type(exc).__name__)
        finally:
            self._unchecked.subtract(written)
            self._unchecked = +self._unchecked
            self._checked_at = self._clock()


async def table_counters(conn: asyncpg.Connection) -> list[TableCounters]:
    return [
        TableCounters(row["name"], row["estimated_rows"], row["changed"], row["analyses"])
        for row in await conn.fetch(queries.AUDIENCE_TABLE_COUNTERS, list(AUDIENCE_TABLES))
    ]


async def analyze(conn: asyncpg.Connection, tables: list[TableCounters]) -> list[str]:
    """Analyse ``tables`` unless someone did since their counters were read; the names analysed."""
    analysed = await conn.fetchval(
        queries.ANALYZE_AUDIENCE_TABLES,
        [table.name for table in tables],
        [table.analyses for table in tables],
    )
    return list(analysed)


# The segmenter process's one instance (a CLI import has its own).
STATISTICS = AudienceStatistics()
