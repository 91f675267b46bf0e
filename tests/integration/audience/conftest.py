from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.segmenter import snapshot
from shared import topology
from shared.broker import Publisher, connect
from tests.support import IsolatedEnvironment


@pytest.fixture(scope="module")
async def broker(isolated_env: IsolatedEnvironment) -> AsyncIterator[Publisher]:
    """A publisher on the session's vhost with the whole topology declared, per test module."""
    connection = await connect(isolated_env.amqp_url, retry_s=10)
    publisher = await Publisher.open(connection, timeout_s=5)
    await topology.declare_all(publisher.channel, [5])
    try:
        yield publisher
    finally:
        await connection.close()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshot chunks of two numbers, then three: a handful of customers makes several chunks."""
    monkeypatch.setattr(snapshot, "FIRST_CHUNK_PHONES", 2)
    monkeypatch.setattr(snapshot, "CHUNK_PHONES", 3)
