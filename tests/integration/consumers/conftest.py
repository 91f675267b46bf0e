"""A broker connection and a publisher with the whole topology declared, per test module; the
tenants a module seeded are forgotten when it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aio_pika.abc import AbstractRobustConnection

from shared import topology
from shared.broker import Publisher, connect
from tests.integration.tracker.helpers import forget_seeded_tenants
from tests.support import IsolatedEnvironment


@pytest.fixture(scope="module")
async def connection(
    isolated_env: IsolatedEnvironment, pool: asyncpg.Pool
) -> AsyncIterator[AbstractRobustConnection]:
    connection = await connect(isolated_env.amqp_url, retry_s=10)
    try:
        yield connection
    finally:
        await connection.close()
        await forget_seeded_tenants(pool)


@pytest.fixture(scope="module")
async def broker(connection: AbstractRobustConnection) -> Publisher:
    publisher = await Publisher.open(connection, timeout_s=5)
    await topology.declare_all(publisher.channel, [5])
    return publisher
