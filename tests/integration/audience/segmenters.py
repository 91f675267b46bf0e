"""What a segmenter process uses to schedule, start and hold campaigns, built in the test's own
process on the session's database and vhost: its own pool, broker connection, runner and clock
(read from an offset file the test moves), so two of them act as two segmenter replicas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aio_pika.abc import AbstractRobustConnection

from services.segmenter.campaigns import Lifecycle
from services.segmenter.runner import CampaignRunner
from services.segmenter.snapshot import CampaignPublisher
from shared.broker import Publisher, connect
from shared.clock import Clock
from shared.db import create_pool
from tests.support import IsolatedEnvironment


@dataclass
class Segmenter:
    """One segmenter's pool, runner and broker connection, and the lifecycle that uses them."""

    pool: asyncpg.Pool
    lifecycle: Lifecycle
    runner: CampaignRunner
    connection: AbstractRobustConnection

    async def close(self) -> None:
        await self.runner.stop()
        await self.connection.close()
        await self.pool.close()


async def segmenter(env: IsolatedEnvironment, clock_file: Path) -> Segmenter:
    pool = await create_pool(env.database_url, min_size=1, max_size=4)
    connection = await connect(env.amqp_url, retry_s=10)
    publisher = await Publisher.open(connection, timeout_s=5)
    runner = CampaignRunner(pool, CampaignPublisher(pool, publisher, 500))
    lifecycle = Lifecycle(pool, publisher, runner, Clock(str(clock_file)))
    return Segmenter(pool, lifecycle, runner, connection)
