"""Fixtures of the tests of the audience tables' statistics and vacuums."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.segmenter.audience import statistics


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> statistics.AudienceStatistics:
    """A process state that has checked nothing yet, as in a segmenter just started."""
    keeper = statistics.AudienceStatistics()
    monkeypatch.setattr(statistics, "STATISTICS", keeper)
    return keeper


@pytest.fixture
async def no_autovacuum(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Only the engine analyses and vacuums the audience tables during the test (where autovacuum
    is on, it could get to a freshly loaded table first and the engine would rightly skip it)."""
    for table in statistics.AUDIENCE_TABLES:
        await pool.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    try:
        yield
    finally:
        for table in statistics.AUDIENCE_TABLES:
            await pool.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
        # The session's database goes on to other tests: leave the tables analysed, as autovacuum
        # would soon, so that they are not planned on the statistics of before this test's load.
        await pool.execute(f"ANALYZE {', '.join(statistics.AUDIENCE_TABLES)}")
