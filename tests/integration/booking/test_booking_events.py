"""Booking events on the broker: applied by the segmenter's consumer, malformed ones parked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest
from booking_api import new_tenant

from services.segmenter.booking.consumer import consume_booking
from shared import topology
from shared.broker import Publisher, connect
from shared.events import (
    BookingAppointmentDeleted,
    BookingAppointmentUpserted,
    BookingCustomerUpserted,
    BookingServiceUpserted,
)
from tests.integration.tracker.helpers import eventually
from tests.support import IsolatedEnvironment

STARTS = datetime(2026, 4, 1, 14, tzinfo=UTC)


@pytest.fixture(scope="module")
async def broker(isolated_env: IsolatedEnvironment, pool: asyncpg.Pool) -> AsyncIterator[Publisher]:
    connection = await connect(isolated_env.amqp_url, retry_s=10)
    publisher = await Publisher.open(connection, timeout_s=5)
    await topology.declare_all(publisher.channel, [5])
    await consume_booking(connection, publisher, pool)
    try:
        yield publisher
    finally:
        await connection.close()


async def test_published_booking_events_are_applied_in_order(pool: asyncpg.Pool, broker: Publisher) -> None:
    # Given a tenant
    tenant_id, _ = await new_tenant(pool, region="GB")

    # When another system publishes a service, a customer in local format, two appointments, one deletion
    events = [
        BookingServiceUpserted(tenant_id=tenant_id, external_id="s1", name="Cut"),
        BookingCustomerUpserted(
            tenant_id=tenant_id, external_id="c1", first_name="Ann", phone="07911 123456"
        ),
        BookingAppointmentUpserted(
            tenant_id=tenant_id,
            external_id="a1",
            customer_id="c1",
            service_id="s1",
            starts_at=STARTS,
            created_at=STARTS,
            status="approved",
        ),
        BookingAppointmentUpserted(
            tenant_id=tenant_id,
            external_id="a2",
            customer_id="c1",
            starts_at=STARTS,
            created_at=STARTS,
            status="pending",
        ),
        BookingAppointmentDeleted(tenant_id=tenant_id, external_id="a2"),
    ]
    for event in events:
        await broker.publish(topology.BOOKING_EXCHANGE, event.TYPE, event)

    # Then the customer is stored in E.164 with the one remaining appointment
    async def applied() -> Any:
        return await pool.fetchrow(
            "SELECT phone_e164, appointment_count FROM customers WHERE tenant_id = $1 AND external_id = 'c1'"
            " AND NOT EXISTS (SELECT 1 FROM appointments WHERE tenant_id = $1 AND external_id = 'a2')"
            " AND EXISTS (SELECT 1 FROM appointments WHERE tenant_id = $1 AND external_id = 'a1')",
            tenant_id,
        )

    row = await eventually(applied)
    assert row is not None and tuple(row) == ("+447911123456", 1)


async def test_an_unparseable_phone_in_an_event_is_kept_and_flagged(
    pool: asyncpg.Pool, broker: Publisher
) -> None:
    tenant_id, _ = await new_tenant(pool)
    event = BookingCustomerUpserted(tenant_id=tenant_id, external_id="c1", phone="ring twice")
    await broker.publish(topology.BOOKING_EXCHANGE, event.TYPE, event)
    row = await eventually(
        lambda: pool.fetchrow("SELECT phone_raw, phone_e164 FROM customers WHERE tenant_id = $1", tenant_id)
    )
    assert tuple(row) == ("ring twice", None)


async def read_parked(publisher: Publisher, expected: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    queue = await publisher.channel.get_queue(topology.parked_queue_name(topology.BOOKING_QUEUE))
    parked: list[aio_pika.abc.AbstractIncomingMessage] = []
    deadline = asyncio.get_running_loop().time() + 10
    while len(parked) < expected and asyncio.get_running_loop().time() < deadline:
        message = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        parked.append(message)
    return parked


async def test_malformed_booking_events_are_parked_and_the_consumer_keeps_going(
    pool: asyncpg.Pool, broker: Publisher
) -> None:
    # Given a tenant
    tenant_id, _ = await new_tenant(pool)

    # When a body that is not JSON, an event with an unknown field and an appointment of an unknown
    # customer are published, followed by a good event
    await broker.publish_raw(topology.BOOKING_EXCHANGE, "booking.customer.upserted", b"{not json", "x")
    await broker.publish_raw(
        topology.BOOKING_EXCHANGE,
        "booking.customer.upserted",
        orjson.dumps({"tenant_id": str(tenant_id), "external_id": "c9", "nickname": "x"}),
        "booking.customer.upserted.v1",
    )
    orphan = BookingAppointmentUpserted(
        tenant_id=tenant_id,
        external_id="a1",
        customer_id="nobody",
        starts_at=STARTS,
        created_at=STARTS,
        status="approved",
    )
    await broker.publish(topology.BOOKING_EXCHANGE, orphan.TYPE, orphan)
    good = BookingCustomerUpserted(tenant_id=tenant_id, external_id="c1")
    await broker.publish(topology.BOOKING_EXCHANGE, good.TYPE, good)

    # Then the three bad ones are parked with a reason, and the good one is applied
    parked = await read_parked(broker, 3)
    reasons = [str((m.headers or {}).get(topology.PARK_ERROR_HEADER)) for m in parked]
    assert len(parked) == 3
    assert any("nickname" in reason for reason in reasons)
    assert any("unknown customer" in reason for reason in reasons)
    assert (
        await eventually(
            lambda: pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant_id)
        )
        == 1
    )
