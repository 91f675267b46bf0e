from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from shared.db import create_pool
from shared.schema import migrate_dsn
from tests.support import IsolatedEnvironment, Stack


@pytest.fixture(scope="session")
def isolated_env() -> Iterator[IsolatedEnvironment]:
    """A fresh database and broker vhost for this test session, removed afterwards."""
    env = IsolatedEnvironment()
    env.create()
    os.environ.update(env.env())
    try:
        yield env
    finally:
        env.destroy()


@pytest.fixture(scope="session")
async def pool(isolated_env: IsolatedEnvironment) -> AsyncIterator[asyncpg.Pool]:
    await migrate_dsn(isolated_env.database_url)
    pool = await create_pool(isolated_env.database_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def stack(isolated_env: IsolatedEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The simulator and the four services (two senders) as processes, for one test module."""
    running = Stack(env=isolated_env.env(), log_dir=tmp_path_factory.mktemp("stack"), senders=2)
    try:
        running.start()
        yield running
    finally:
        running.stop()
