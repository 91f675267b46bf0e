"""Every consumer parks what it cannot process and keeps going; what fails for a passing reason is
delivered again with back-off, but never more than a bounded number of times. Real broker and
database: the booking and inbound consumers of the services, and the shared consumer on classic and
quorum queues."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import aio_pika
import asyncpg
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from services.segmenter.booking.consumer import consume_booking
from services.tracker.consumers import start_inbound_consumer
from shared import topology
from shared.broker import ConsumerPolicy, Publisher, consume
from shared.events import BookingCustomerUpserted, Event, InboundMessage
from shared.metrics import PARKED_MESSAGES
from tests.integration.tracker.helpers import eventually, new_sid, seed_tenant
from tests.support import IsolatedEnvironment


class Probe(Event):
    TYPE = "test.probe"
    n: int


async def take_parked(publisher: Publisher, queue: str, expected: int) -> list[AbstractIncomingMessage]:
    parked_queue = await publisher.channel.get_queue(topology.parked_queue_name(queue))
    parked: list[AbstractIncomingMessage] = []
    deadline = asyncio.get_running_loop().time() + 15
    while len(parked) < expected and asyncio.get_running_loop().time() < deadline:
        message = await parked_queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        parked.append(message)
    return parked


def parked_count(queue: str, reason: str) -> float:
    return PARKED_MESSAGES.labels(queue, reason)._value.get()


async def test_booking_events_the_database_refuses_are_parked_and_another_tenants_sync_goes_on(
    pool: asyncpg.Pool, broker: Publisher, connection: AbstractRobustConnection
) -> None:
    # Given the booking consumer (prefetch 1) and two tenants, one with a customer
    await consume_booking(connection, broker, pool)
    hostile, other = await seed_tenant(pool), await seed_tenant(pool)
    good = BookingCustomerUpserted(tenant_id=hostile.id, external_id="c1", phone="+14155550101")
    await broker.publish(topology.BOOKING_EXCHANGE, good.TYPE, good)
    before = sum(parked_count(topology.BOOKING_QUEUE, reason) for reason in ("failed", "rejected"))

    # When the first tenant publishes a customer whose name holds a NUL byte and an appointment
    # dated in year 1 at +14:00 (values PostgreSQL cannot store: refused by the event's schema or
    # else by the database), then the other tenant publishes a customer
    nul = {
        "tenant_id": str(hostile.id),
        "external_id": "c2",
        "first_name": "A\u0000n",
        "phone": "+14155550102",
    }
    await broker.publish_raw(
        topology.BOOKING_EXCHANGE,
        "booking.customer.upserted",
        orjson.dumps(nul),
        "booking.customer.upserted.v1",
    )
    ancient = {
        "tenant_id": str(hostile.id),
        "external_id": "a1",
        "customer_id": "c1",
        "starts_at": "0001-01-01T00:00:00+14:00",
        "created_at": "0001-01-01T00:00:00+14:00",
        "status": "approved",
    }
    await broker.publish_raw(
        topology.BOOKING_EXCHANGE,
        "booking.appointment.upserted",
        orjson.dumps(ancient),
        "booking.appointment.upserted.v1",
    )
    later = BookingCustomerUpserted(tenant_id=other.id, external_id="c9", phone="+14155550109")
    await broker.publish(topology.BOOKING_EXCHANGE, later.TYPE, later)

    # Then the other tenant's customer is applied
    stored = await eventually(
        lambda: pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", other.id)
    )
    assert stored == 1

    # And both refused events are parked once, with reason, source queue, error and delivery count
    parked = await take_parked(broker, topology.BOOKING_QUEUE, 2)
    assert len(parked) == 2
    for message in parked:
        headers = message.headers or {}
        assert headers[topology.PARK_REASON_HEADER] in {"rejected", "failed"}
        assert headers[topology.PARK_ERROR_HEADER]
        assert headers[topology.PARK_QUEUE_HEADER] == topology.BOOKING_QUEUE
        assert headers[topology.PARK_DELIVERY_COUNT_HEADER] == 1
        assert headers[topology.PARK_ROUTING_KEY_HEADER] in {
            "booking.customer.upserted",
            "booking.appointment.upserted",
        }
    assert any(b"A\\u0000n" in message.body for message in parked)
    after = sum(parked_count(topology.BOOKING_QUEUE, reason) for reason in ("failed", "rejected"))
    assert after - before == 2
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", hostile.id) == 1


async def test_an_inbound_message_with_a_nul_byte_is_parked_and_another_tenants_stop_is_applied(
    pool: asyncpg.Pool, broker: Publisher, connection: AbstractRobustConnection
) -> None:
    # Given the inbound consumer and two tenants
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=16)
    queue = await channel.get_queue(topology.INBOUND_QUEUE)
    await start_inbound_consumer(queue, pool, broker)
    hostile, other = await seed_tenant(pool), await seed_tenant(pool)

    # When the first tenant's webhook passes on 24 messages whose Body holds a NUL byte, then a
    # customer of the other tenant replies STOP
    for _ in range(24):
        params = {"MessageSid": new_sid(), "From": "whatsapp:+14155550120", "Body": "hi\u0000"}
        event = InboundMessage(tenant_id=hostile.id, params=params)
        await broker.publish(topology.STATUS_EXCHANGE, topology.INBOUND_ROUTING_KEY, event)
    stop = InboundMessage(
        tenant_id=other.id,
        params={"MessageSid": new_sid(), "From": "whatsapp:+14155550121", "Body": "STOP"},
    )
    await broker.publish(topology.STATUS_EXCHANGE, topology.INBOUND_ROUTING_KEY, stop)

    # Then the STOP suppresses the number within seconds
    suppressed = await eventually(
        lambda: pool.fetchval(
            "SELECT 1 FROM suppressions WHERE tenant_id = $1 AND phone_e164 = '+14155550121'", other.id
        )
    )
    assert suppressed == 1

    # And the 24 messages are parked, each once, naming the database's refusal
    parked = await take_parked(broker, topology.INBOUND_QUEUE, 24)
    assert len(parked) == 24
    assert {(m.headers or {})[topology.PARK_REASON_HEADER] for m in parked} == {"failed"}
    assert all(
        "CharacterNotInRepertoire" in str((m.headers or {})[topology.PARK_ERROR_HEADER]) for m in parked
    )
    await channel.close()


async def _probe_queue(publisher: Publisher, *, quorum: bool) -> AbstractQueue:
    name = f"wce.test.probe.{uuid.uuid4().hex[:8]}"
    arguments = {"x-queue-type": "quorum"} if quorum else {}
    queue = await publisher.channel.declare_queue(name, durable=True, arguments=arguments)
    await topology.declare_queue(publisher.channel, topology.parked_queue(name))
    return queue


@pytest.mark.parametrize("quorum", [False, True], ids=["classic queue", "quorum queue"])
async def test_a_message_failing_for_a_passing_reason_is_retried_with_back_off_then_parked_at_the_limit(
    broker: Publisher, connection: AbstractRobustConnection, quorum: bool
) -> None:
    # Given a consumer whose handler fails with a dropped connection for message 1 always and
    # for message 2 twice, allowing 4 deliveries
    channel = await connection.channel()
    queue = await _probe_queue(broker, quorum=quorum)
    queue = await channel.get_queue(queue.name)
    calls: dict[int, list[float]] = {1: [], 2: []}
    done: list[int] = []

    async def handler(event: Probe, message: AbstractIncomingMessage) -> None:
        calls[event.n].append(asyncio.get_running_loop().time())
        if event.n == 1 or len(calls[event.n]) <= 2:
            raise ConnectionResetError("connection reset by peer")
        done.append(event.n)

    policy = ConsumerPolicy(max_deliveries=4, retry_base_s=0.1, retry_max_s=0.4)
    await consume(queue, Probe, handler, broker, policy=policy)

    # When both are published
    for n in (1, 2):
        await broker.publish("", queue.name, Probe(n=n))

    # Then message 2 is handled on its third delivery, and message 1 is parked after its fourth
    parked = await take_parked(broker, queue.name, 1)
    assert done == [2]
    assert len(parked) == 1 and orjson.loads(parked[0].body)["n"] == 1
    headers = parked[0].headers or {}
    assert headers[topology.PARK_REASON_HEADER] == "redelivery_limit"
    assert headers[topology.PARK_DELIVERY_COUNT_HEADER] == 5
    # (the original count is not carried; a quorum parked queue counts its own deliveries from 0)
    assert headers.get(topology.DELIVERY_COUNT_HEADER, 0) == 0
    assert len(calls[1]) == 4
    # with back-off growing between deliveries: 0.1, 0.2, 0.4 s
    gaps = [b - a for a, b in itertools.pairwise(calls[1])]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39, gaps
    await channel.close()


async def test_a_message_that_fails_for_good_is_parked_at_once_without_retries(
    broker: Publisher, connection: AbstractRobustConnection
) -> None:
    # Given a consumer whose handler hits a bug
    channel = await connection.channel()
    queue = await channel.get_queue((await _probe_queue(broker, quorum=False)).name)
    calls: list[int] = []

    async def handler(event: Probe, message: AbstractIncomingMessage) -> None:
        calls.append(event.n)
        if event.n == 1:
            raise KeyError("missing")

    await consume(queue, Probe, handler, broker, policy=ConsumerPolicy(max_deliveries=4, retry_base_s=0.1))

    # When a failing message and a good one are published
    await broker.publish("", queue.name, Probe(n=1))
    await broker.publish("", queue.name, Probe(n=2))

    # Then the failing one is parked after one delivery and the good one handled
    parked = await take_parked(broker, queue.name, 1)
    assert len(parked) == 1
    headers = parked[0].headers or {}
    assert headers[topology.PARK_REASON_HEADER] == "failed"
    assert "KeyError" in str(headers[topology.PARK_ERROR_HEADER])
    assert headers[topology.PARK_DELIVERY_COUNT_HEADER] == 1
    assert await eventually(lambda: asyncio.sleep(0, result=calls == [1, 2]))
    await channel.close()


async def test_a_redelivered_message_of_a_dead_consumer_counts_its_earlier_deliveries(
    broker: Publisher, connection: AbstractRobustConnection, isolated_env: IsolatedEnvironment
) -> None:
    # Given a quorum queue whose message was delivered to a consumer that died holding it, twice
    queue = await _probe_queue(broker, quorum=True)
    await broker.publish("", queue.name, Probe(n=7))
    for _ in range(2):
        dying = await aio_pika.connect(isolated_env.amqp_url)
        dying_channel = await dying.channel()
        held = await (await dying_channel.get_queue(queue.name)).get(fail=False, timeout=5)
        assert held is not None
        await dying.close()

    # When a new consumer allowing two deliveries takes it
    channel = await connection.channel()
    handled: list[int] = []

    async def handler(event: Probe, message: AbstractIncomingMessage) -> None:
        handled.append(event.n)

    await consume(
        await channel.get_queue(queue.name), Probe, handler, broker, policy=ConsumerPolicy(max_deliveries=2)
    )

    # Then it is parked as redelivered too often, without being handled again
    parked = await take_parked(broker, queue.name, 1)
    assert len(parked) == 1
    assert (parked[0].headers or {})[topology.PARK_REASON_HEADER] == "redelivery_limit"
    assert (parked[0].headers or {})[topology.PARK_DELIVERY_COUNT_HEADER] == 3
    assert handled == []
    await channel.close()


async def test_a_message_the_broker_will_not_take_parked_is_kept_and_handed_back_with_back_off(
    broker: Publisher, connection: AbstractRobustConnection
) -> None:
    # Given a consumer whose handler hits a bug, on a queue whose parked queue is missing (the
    # parked copy is unroutable), allowing 4 deliveries
    channel = await connection.channel()
    name = f"wce.test.probe.{uuid.uuid4().hex[:8]}"
    queue = await channel.declare_queue(name, durable=True)
    calls: list[float] = []

    async def handler(event: Probe, message: AbstractIncomingMessage) -> None:
        calls.append(asyncio.get_running_loop().time())
        raise KeyError("missing")

    policy = ConsumerPolicy(max_deliveries=4, retry_base_s=0.1, retry_max_s=0.4)
    await consume(queue, Probe, handler, broker, policy=policy)

    # When a message is published and cannot be parked for a while
    await broker.publish("", name, Probe(n=1))
    await asyncio.sleep(2.0)

    # Then it was handled no more than its deliveries allow, with back-off between them
    assert len(calls) == 4, len(calls)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(gap >= 0.09 for gap in gaps), gaps

    # And once its parked queue exists it is parked there, not lost
    await topology.declare_queue(broker.channel, topology.parked_queue(name))
    parked = await take_parked(broker, name, 1)
    assert len(parked) == 1
    assert (parked[0].headers or {})[topology.PARK_REASON_HEADER] == "redelivery_limit"
    assert len(calls) == 4
    await channel.close()
