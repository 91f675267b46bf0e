"""Consumer of ``wce.segmenter.booking.v2``: booking events other systems publish on ``wce.booking``.

The routing key names the event; its body is validated with that event's model. An event that
can never apply (invalid body, unknown tenant, an appointment of an unknown customer, an unknown
status) is parked with the reason; unparseable phones are kept and flagged, as in the CSV import.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from services.segmenter.audience import statistics
from services.segmenter.booking import service
from services.segmenter.booking.schemas import AppointmentRow, CustomerRow, LocationRow, ServiceRow, StaffRow
from shared import topology
from shared.broker import PoisonMessage, Publisher, consume
from shared.db import tenant_transaction
from shared.events import (
    BookingAppointmentDeleted,
    BookingAppointmentUpserted,
    BookingCustomerDeleted,
    BookingCustomerUpserted,
    BookingLocationUpserted,
    BookingServiceUpserted,
    BookingStaffUpserted,
    Event,
)
from shared.http import InputError
from shared.logging import get_logger
from shared.publishers import PublisherCheck

log = get_logger(__name__)

Apply = Callable[[asyncpg.Connection, Any], Awaitable[None]]
# The audience table each event writes a row of: a sync of thousands of events leaves the
# planner's statistics stale like a bulk import does (services/segmenter/audience/statistics.py).
WRITES = {
    BookingCustomerUpserted.TYPE: "customers",
    BookingCustomerDeleted.TYPE: "customers",
    BookingAppointmentUpserted.TYPE: "appointments",
    BookingAppointmentDeleted.TYPE: "appointments",
    BookingServiceUpserted.TYPE: "services",
    BookingLocationUpserted.TYPE: "locations",
}


class RawBookingEvent(Event):
    """Any body: each event is decoded by the model its routing key names."""

    model_config = Event.model_config | {"extra": "allow"}


def _fields(event: Event) -> dict[str, Any]:
    return event.model_dump(exclude={"v", "tenant_id"})


async def _customer(conn: asyncpg.Connection, event: BookingCustomerUpserted) -> None:
    region, _ = await service.tenant_region(conn, event.tenant_id)
    rows = [CustomerRow.model_validate(_fields(event))]
    check = await service.check_customers(rows, region=region, invalid_phones="flag")
    outcome = await service.upsert_customers(conn, tenant_id=event.tenant_id, rows=rows, check=check)
    if outcome.result.flagged:
        log.info("customer kept without a valid phone", external_id=event.external_id)


async def _appointment(conn: asyncpg.Connection, event: BookingAppointmentUpserted) -> None:
    await service.tenant_region(conn, event.tenant_id)
    await service.upsert_appointments(
        conn, tenant_id=event.tenant_id, rows=[AppointmentRow.model_validate(_fields(event))]
    )


async def _service(conn: asyncpg.Connection, event: BookingServiceUpserted) -> None:
    await service.tenant_region(conn, event.tenant_id)
    await service.upsert_services(
        conn, tenant_id=event.tenant_id, rows=[ServiceRow.model_validate(_fields(event))]
    )


async def _location(conn: asyncpg.Connection, event: BookingLocationUpserted) -> None:
    await service.tenant_region(conn, event.tenant_id)
    await service.upsert_locations(
        conn, tenant_id=event.tenant_id, rows=[LocationRow.model_validate(_fields(event))]
    )


async def _staff(conn: asyncpg.Connection, event: BookingStaffUpserted) -> None:
    await service.tenant_region(conn, event.tenant_id)
    await service.upsert_staff(
        conn, tenant_id=event.tenant_id, rows=[StaffRow.model_validate(_fields(event))]
    )


async def _customer_deleted(conn: asyncpg.Connection, event: BookingCustomerDeleted) -> None:
    await service.delete(conn, tenant_id=event.tenant_id, kind="customers", external_ids=[event.external_id])


async def _appointment_deleted(conn: asyncpg.Connection, event: BookingAppointmentDeleted) -> None:
    await service.delete(
        conn, tenant_id=event.tenant_id, kind="appointments", external_ids=[event.external_id]
    )


HANDLERS: dict[str, tuple[type[Event], Apply]] = {
    BookingCustomerUpserted.TYPE: (BookingCustomerUpserted, _customer),
    BookingCustomerDeleted.TYPE: (BookingCustomerDeleted, _customer_deleted),
    BookingAppointmentUpserted.TYPE: (BookingAppointmentUpserted, _appointment),
    BookingAppointmentDeleted.TYPE: (BookingAppointmentDeleted, _appointment_deleted),
    BookingServiceUpserted.TYPE: (BookingServiceUpserted, _service),
    BookingLocationUpserted.TYPE: (BookingLocationUpserted, _location),
    BookingStaffUpserted.TYPE: (BookingStaffUpserted, _staff),
}


async def apply_event(
    pool: asyncpg.Pool,
    routing_key: str,
    body: bytes,
    *,
    publishers: PublisherCheck | None = None,
    user_id: str | None = None,
) -> None:
    """Apply one booking event; PoisonMessage when it can never apply or its publisher
    (``user_id``, vouched for by the broker) may not act for its tenant."""
    entry = HANDLERS.get(routing_key)
    if entry is None:
        raise PoisonMessage(f"no booking event has routing key {routing_key!r}")
    model, apply = entry
    try:
        event = model.model_validate_json(body)
    except ValidationError as exc:
        raise PoisonMessage(f"invalid {model.message_type()}: {exc}") from exc
    if publishers is not None:
        await publishers.require(user_id, event.tenant_id)  # type: ignore[attr-defined]
    try:
        async with tenant_transaction(pool, event.tenant_id) as conn:  # type: ignore[attr-defined]
            await apply(conn, event)
    except service.TenantNotFound as exc:
        raise PoisonMessage(f"unknown tenant {exc}") from exc
    except (InputError, ValidationError) as exc:
        raise PoisonMessage(f"{routing_key}: {exc}") from exc
    if routing_key in WRITES:
        await statistics.STATISTICS.after_write(pool, {WRITES[routing_key]: 1})


async def consume_booking(
    connection: AbstractRobustConnection,
    publisher: Publisher,
    pool: asyncpg.Pool,
    publishers: PublisherCheck | None = None,
) -> str:
    """Consume on a channel of its own with a prefetch of one: events are applied one at a time in
    the order they arrive, so a customer is stored before the appointment published after it."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)
    queue = await channel.get_queue(topology.BOOKING_QUEUE)

    async def on_event(_: Any, message: AbstractIncomingMessage) -> None:
        await apply_event(
            pool, message.routing_key or "", message.body, publishers=publishers, user_id=message.user_id
        )

    return await consume(queue, RawBookingEvent, on_event, publisher)
