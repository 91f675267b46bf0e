"""On the real broker: the engine's durable queues are quorum queues; a message that keeps
coming back is dead-lettered into its queue's parked queue by the broker itself once past the
delivery limit (the backstop behind the consumers' own parking), and a retry tier's expired
messages return to the tenant's dispatch queue — nothing is dropped on either path."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shared import topology
from shared.broker import Publisher, connect
from tests.support import IsolatedEnvironment


@pytest.fixture(scope="module")
async def connection(isolated_env: IsolatedEnvironment) -> AsyncIterator[AbstractRobustConnection]:
    connection = await connect(isolated_env.amqp_url, retry_s=10)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def publisher(connection: AbstractRobustConnection) -> Publisher:
    publisher = await Publisher.open(connection, timeout_s=5)
    await topology.declare_all(publisher.channel, [1, 5])
    return publisher


class Inbox:
    """A consumer on one queue (basic.get is refused by single-active-consumer quorum queues)."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue
        self.messages: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    @classmethod
    async def open(cls, connection: AbstractRobustConnection, name: str) -> Inbox:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)
        inbox = cls(await channel.get_queue(name, ensure=False))
        await inbox.queue.consume(inbox.messages.put)
        return inbox

    async def next(self, timeout_s: float = 10.0) -> AbstractIncomingMessage | None:
        try:
            return await asyncio.wait_for(self.messages.get(), timeout_s)
        except TimeoutError:
            return None


async def test_the_durable_queues_are_quorum_queues(
    connection: AbstractRobustConnection, publisher: Publisher
) -> None:
    for spec in [*topology.WORK_QUEUES, topology.retry_queue(5), topology.parked_queue(topology.SEND_QUEUE)]:
        channel = await connection.channel()
        # Declaring the same name as a classic queue is refused: the queue is a quorum queue.
        arguments = {**spec.args(), "x-queue-type": "classic"}
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-queue-type"):
            await channel.declare_queue(spec.name, durable=True, arguments=arguments)


async def test_a_message_delivered_past_the_limit_is_parked_by_the_broker(
    connection: AbstractRobustConnection, publisher: Publisher
) -> None:
    tenant = str(uuid.uuid4())
    await topology.declare_tenant(publisher.channel, tenant, "quorum")
    name = topology.dispatch_queue_name(tenant, "quorum")
    body = f"poison {uuid.uuid4()}".encode()
    await publisher.publish_raw(topology.RECIPIENTS_EXCHANGE, tenant, body, "test.poison")
    inbox = await Inbox.open(connection, name)
    returned = 0
    for _ in range(topology.DELIVERY_LIMIT + 5):
        message = await inbox.next(timeout_s=5)
        if message is None:
            break
        assert message.body == body
        await message.nack(requeue=True)
        returned += 1
    assert returned == topology.DELIVERY_LIMIT + 1, "delivered once and returned DELIVERY_LIMIT times"
    parked = await (await Inbox.open(connection, topology.parked_queue_name(name))).next()
    assert parked is not None and parked.body == body
    [death] = parked.headers["x-death"]
    assert death["reason"] == "delivery_limit" and death["queue"] == name
    await parked.ack()
    assert await inbox.next(timeout_s=0.5) is None


async def test_an_expired_retry_returns_to_the_tenants_dispatch_queue(
    connection: AbstractRobustConnection, publisher: Publisher
) -> None:
    tenant = str(uuid.uuid4())
    await topology.declare_tenant(publisher.channel, tenant, "quorum")
    body = f"retry {uuid.uuid4()}".encode()
    await publisher.publish_raw(topology.retry_exchange_name(1), tenant, body, "test.retry")
    inbox = await Inbox.open(connection, topology.dispatch_queue_name(tenant, "quorum"))
    assert await inbox.next(timeout_s=0.3) is None, "not before its TTL"
    message = await inbox.next(timeout_s=10)
    assert message is not None and message.body == body
    assert message.headers["x-death"][0]["reason"] == "expired"
    await message.ack()
