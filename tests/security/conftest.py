from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.integration.tracker.helpers import RunningTracker, forget_seeded_tenants, start_tracker
from tests.support import IsolatedEnvironment


@pytest.fixture(scope="module")
async def seeded_data_removed(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """A module's seeded tenants go when the module ends."""
    yield
    await forget_seeded_tenants(pool)


@pytest.fixture(scope="module")
def tracker(
    isolated_env: IsolatedEnvironment,
    pool: asyncpg.Pool,
    seeded_data_removed: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningTracker]:
    """The tracker as a process on the session's database and vhost (migrated by ``pool``)."""
    running = start_tracker(isolated_env, tmp_path_factory.mktemp("tracker"))
    try:
        yield running
    finally:
        running.process.stop()
