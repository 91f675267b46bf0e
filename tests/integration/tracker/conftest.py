from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractQueue

from shared import topology
from tests.integration.tracker.helpers import RunningTracker, forget_seeded_tenants, start_tracker
from tests.support import IsolatedEnvironment


@pytest.fixture(scope="module", autouse=True)
async def seeded_data_removed(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Each module's seeded tenants go when the module ends."""
    yield
    await forget_seeded_tenants(pool)


@pytest.fixture(scope="module")
def tracker(
    isolated_env: IsolatedEnvironment, pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningTracker]:
    """The tracker as a process on the session's database and vhost (migrated by ``pool``)."""
    running = start_tracker(isolated_env, tmp_path_factory.mktemp("tracker"))
    try:
        yield running
    finally:
        running.process.stop()


@pytest.fixture
async def status_spy(
    isolated_env: IsolatedEnvironment, tracker: RunningTracker
) -> AsyncIterator[AbstractQueue]:
    """A private queue bound like the tracker's: it receives a copy of everything the webhooks
    publish, so a test can see what reached the broker."""
    connection = await aio_pika.connect_robust(isolated_env.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(topology.STATUS_EXCHANGE, topology.STATUS_ROUTING_KEY)
        await queue.bind(topology.STATUS_EXCHANGE, topology.INBOUND_ROUTING_KEY)
        yield queue
