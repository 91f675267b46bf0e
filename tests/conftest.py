from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator, Iterator

import asyncpg
import pytest

from shared.db import create_pool
from shared.schema import migrate_dsn
from tests import support
from tests.own_postgres import OwnPostgres
from tests.scheduling import LongestFirstScheduling, assign_groups, turn
from tests.support import IsolatedEnvironment, Stack
from tools.forked_process import ForkServer
from tools.stack import fork_from

WORKER_POSTGRES = pytest.StashKey[OwnPostgres]()


def pytest_configure(config: pytest.Config) -> None:
    """The services, the simulator and the migration command are started as forks of a server
    that imported them once (tools/forked_process.py): the run is bound by the CPU, and imports
    were most of what starting a stack cost.

    Each worker of a parallel run (``make test``) gets a PostgreSQL cluster of its own: the
    stacks of several workers at once would outgrow the shared server's connection limit, and the
    services' roles, which belong to the whole cluster, would be created by concurrent migrations.
    Set before the test modules are collected, so that they import the worker's server URL."""
    fork_from(ForkServer())
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    node = OwnPostgres(max_connections=400).init()
    node.start()
    config.stash[WORKER_POSTGRES] = node
    support.BASE_DATABASE_URL = node.url("postgres")


def pytest_unconfigure(config: pytest.Config) -> None:
    node = config.stash.get(WORKER_POSTGRES, None)
    if node is not None:
        node.destroy()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The workers collect the tests (in a worker pytest-xdist sets ``--dist`` to "no" and
    # ``loadgroup`` to whether the run was ``--dist loadgroup``); the scheduler reads the groups
    # they write in the run's directory, the parent of each worker's own.
    if config.getoption("loadgroup", False):
        assign_groups(items, config._tmp_path_factory.getbasetemp().parent)  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return (yield)
    # The run's temporary directory, the parent of each worker's own.
    run_directory = item.config._tmp_path_factory.getbasetemp().parent  # type: ignore[attr-defined]
    with turn(item, run_directory, nextitem):
        return (yield)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LongestFirstScheduling | None:
    if config.getoption("dist") == "loadgroup":
        return LongestFirstScheduling(config, log)
    return None


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
