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
statistics counters lag behind commits (a backend reports its changes when it goes idle, at most
once a second, otherwise up to ten seconds later), so a writer adds the rows it has just written
to ``n_mod_since_analyze``, and also keeps, per table, the rows it wrote since it last saw the
table analysed: an import in batches whose first batches the counters did not show yet when a
check found the table fresh is still counted whole when its last batch is checked.

Statistics are half of it. The covering indexes spare the table only on pages the visibility
map marks all-visible, which only VACUUM does, and VACUUM needs the owner and cannot run in a
function: on the benchmark's million customers loaded without VACUUM, previews stayed 2–13×
slower than after it, analysed or not. So the same check, once the statistics are fresh, asks the
owner's vacuum process (``shared.audience_vacuum``) to vacuum the tables with
``VACUUM_AFTER_ROWS`` rows changed since their last vacuum, and waits for it up to
``VACUUM_WAIT_S``: an import answers with the tables vacuumed. A reader waits for the statistics
only, never for a vacuum (which takes tens of seconds after a million rows, and may have been
asked for because of another tenant's load): the first preview after a load made another way is
planned on fresh statistics and asks for the vacuum, which goes on without it. Where no such
process is connected, nothing is asked nor waited for
and that half is autovacuum's (migration 1501 has it vacuum the audience tables after inserts of
1 % of their rows); a vacuum asked for that did not come in time is not waited for again before
``VACUUM_RETRY_S``.

The services connect as runtime roles that own no table, and PostgreSQL 15 lets only a table's
owner analyse it; ``analyze_audience_tables`` (migration 1500) is a ``SECURITY DEFINER``
function of the owner that analyses only the audience tables, executable by the segmenter only.

Concurrency: one check runs at a time per process, in a task of its own (a cancelled request
does not cancel an analysis others wait for); requests arriving meanwhile wait for it rather
than start another (readers for its analysis, writers for all of it). Across processes, the
function holds an advisory lock per table and skips a table someone analysed while it waited,
so one burst analyses each table once. ANALYZE takes
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
from shared import audience_vacuum
from shared.logging import get_logger

log = get_logger(__name__)

# The tables the preview and snapshot queries read (the function refuses any other).
AUDIENCE_TABLES = audience_vacuum.AUDIENCE_TABLES
# Changes since the last analysis that make a table stale: MIN_CHANGED_ROWS plus this share of
# its rows (autovacuum's default scale), capped at MAX_CHANGED_ROWS.
CHANGED_FRACTION = 0.1
MIN_CHANGED_ROWS = 1_000
MAX_CHANGED_ROWS = 200_000
# Writers look at the counters after writing this many rows (smaller writes cost nothing).
CHECK_AFTER_ROWS = MIN_CHANGED_ROWS
# Readers look at the counters at most this often per process.
CHECK_INTERVAL_S = 5.0
# How long a check waits for the vacuum it asked for (the vacuum of a million freshly loaded
# customers and five million appointments takes tens of seconds on a small machine).
VACUUM_WAIT_S = 120.0
# A table whose vacuum did not come in time is not asked for (nor waited for) again before this.
VACUUM_RETRY_S = 60.0
# How often a check waiting for a vacuum reads the counters again.
VACUUM_POLL_S = 0.1


def needs_analyze(
    *, estimated_rows: float, changed: int, written: int = 0, written_since_analysis: int = 0
) -> bool:
    """Whether a table of ``estimated_rows`` (``pg_class.reltuples``, -1 when never counted) with
    ``changed`` rows modified since its last analysis, plus ``written`` just now that the counters
    may not show yet, needs a new one. ``written_since_analysis`` is what this process alone wrote
    since it saw the table analysed: a floor on ``changed`` while the counters lag."""
    threshold = min(MAX_CHANGED_ROWS, MIN_CHANGED_ROWS + CHANGED_FRACTION * max(estimated_rows, 0.0))
    return max(changed + written, written_since_analysis) >= threshold


def never_counted(*, estimated_rows: float, analyses: int) -> bool:
    """Whether a table holding rows was never analysed as far as the counters know: its data came
    with the files (a database copied from a template, restored from a file backup) or the
    counters were reset (crash recovery, a promoted standby), so its changes went uncounted."""
    return analyses == 0 and estimated_rows >= MIN_CHANGED_ROWS


@dataclass(frozen=True)
class TableCounters:
    name: str
    estimated_rows: float
    changed: int
    analyses: int


class WritesSinceAnalysis:
    """Rows this process wrote to each table since it last saw that table analysed.

    The table's ``analyses`` count (manual and automatic) tells when someone analysed it: rows
    written before a check that finds the count moved are dropped, except those of the check's own
    round, which the analysis may not have seen (counting them again only analyses a little early)."""

    def __init__(self) -> None:
        self._rows: Counter[str] = Counter()
        self._analyses: dict[str, int] = {}

    def add(self, written: Mapping[str, int]) -> None:
        self._rows.update(written)

    def seen(self, table: TableCounters, this_round: int) -> int:
        """The rows written since ``table`` was last analysed, as of its counters just read."""
        if self._analyses.get(table.name) != table.analyses:
            self._analyses[table.name] = table.analyses
            self._rows[table.name] = min(self._rows[table.name], this_round)
        return self._rows[table.name]

    def analysed(self, table: TableCounters, rows_covered: int) -> None:
        """This process just analysed ``table``, which covered ``rows_covered`` of the rows counted."""
        self._analyses[table.name] = table.analyses + 1
        self._rows[table.name] = max(self._rows[table.name] - rows_covered, 0)


class AudienceStatistics:
    """Per process: when the audience tables were last checked, and rows written since."""

    def __init__(
        self, *, check_interval_s: float = CHECK_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = check_interval_s
        self._clock = clock
        self._checked_at = -math.inf
        self._unchecked: Counter[str] = Counter()
        self._since_analysis = WritesSinceAnalysis()
        self._running: asyncio.Task[None] | None = None
        # The vacuum asked for by the last check, chained after the one before it.
        self._vacuuming: asyncio.Task[None] | None = None
        self._vacuum_missed_at: dict[str, float] = {}

    async def before_read(self, pool: asyncpg.Pool) -> None:
        """Analyse stale audience tables first, unless they were checked in the last few seconds;
        a vacuum the check asks for goes on without this reader."""
        await self._check_while(pool, lambda: self._clock() - self._checked_at >= self._interval)

    async def after_write(self, pool: asyncpg.Pool, written: Mapping[str, int]) -> None:
        """Count rows just committed (table -> rows); past CHECK_AFTER_ROWS, analyse what is stale
        and wait for the vacuum that asks for."""
        audience = {table: rows for table, rows in written.items() if table in AUDIENCE_TABLES}
        self._unchecked.update(audience)
        self._since_analysis.add(audience)
        if await self._check_while(
            pool, lambda: max(self._unchecked.values(), default=0) >= CHECK_AFTER_ROWS
        ):
            vacuuming = self._vacuuming
            if vacuuming is not None:
                await asyncio.shield(vacuuming)

    async def _check_while(self, pool: asyncpg.Pool, due: Callable[[], bool]) -> bool:
        """Whether a check ran for this request (its own or one it waited for)."""
        checked = False
        while due():
            checked = True
            running = self._running
            if running is None or running.done():
                running = self._running = asyncio.create_task(self._check(pool))
                await asyncio.shield(running)
                break
            # Another request's check is under way: wait for it, then see whether it covered ours.
            await asyncio.shield(running)
        return checked

    async def _check(self, pool: asyncpg.Pool) -> None:
        written = Counter(self._unchecked)
        try:
            async with pool.acquire() as conn:
                counters = await table_counters(conn)
                since_analysis = {
                    table.name: self._since_analysis.seen(table, written[table.name]) for table in counters
                }
                stale = [
                    table
                    for table in counters
                    if needs_analyze(
                        estimated_rows=table.estimated_rows,
                        changed=table.changed,
                        written=written[table.name],
                        written_since_analysis=since_analysis[table.name],
                    )
                    or never_counted(estimated_rows=table.estimated_rows, analyses=table.analyses)
                ]
                if stale:
                    began = time.perf_counter()
                    analysed = await analyze(conn, stale)
                    for table in stale:
                        if table.name in analysed:
                            self._since_analysis.analysed(table, since_analysis[table.name])
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
            self._vacuuming = asyncio.create_task(self._vacuum_after(self._vacuuming, pool, written))

    async def _vacuum_after(
        self, previous: asyncio.Task[None] | None, pool: asyncpg.Pool, written: Counter[str]
    ) -> None:
        """The check's vacuum, once the one asked for before it has ended (one at a time)."""
        if previous is not None:
            await asyncio.wait([previous])
        try:
            async with pool.acquire() as conn:
                await self._vacuum(conn, written)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("audience tables not vacuumed", error=str(exc) or type(exc).__name__)

    async def _vacuum(self, conn: asyncpg.Connection, written: Counter[str]) -> None:
        """Have the tables with many rows on pages not all-visible vacuumed, and wait for it."""
        now = self._clock()
        # The appointment triggers rewrite their customers' facts (migration 0200): the pages of
        # those customers lose all-visible too, before the counters show it.
        rewritten = written + Counter({"customers": written["appointments"]})
        due = [
            table
            for table in await audience_vacuum.vacuum_counters(conn)
            if audience_vacuum.needs_vacuum(table, written=rewritten[table.name])
            and now - self._vacuum_missed_at.get(table.name, -math.inf) >= VACUUM_RETRY_S
        ]
        if not due or not await audience_vacuum.listening(conn):
            return
        began = time.perf_counter()
        names = [table.name for table in due]
        await conn.execute(queries.REQUEST_AUDIENCE_VACUUM, audience_vacuum.CHANNEL, ",".join(names))
        waiting = {table.name: table.vacuums for table in due}
        deadline = began + VACUUM_WAIT_S
        while waiting and time.perf_counter() < deadline:
            await asyncio.sleep(VACUUM_POLL_S)
            for table in await audience_vacuum.vacuum_counters(conn, list(waiting)):
                if table.vacuums > waiting[table.name]:
                    del waiting[table.name]
        for name in waiting:
            self._vacuum_missed_at[name] = self._clock()
        log.info(
            "audience tables vacuumed" if not waiting else "audience tables not vacuumed in time",
            tables=[name for name in names if name not in waiting],
            missed=sorted(waiting),
            seconds=round(time.perf_counter() - began, 3),
        )


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
