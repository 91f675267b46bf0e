"""A message of a version the engine does not read is parked with the reason, never read as the
version it knows; and the engine's own followers of lifecycle events bind only the keys they read,
so the answers to campaign requests sharing the campaign.* key space never reach them."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import asyncpg
import orjson
from aio_pika.abc import AbstractRobustConnection

from services.segmenter.booking.consumer import consume_booking
from services.sender.handlers import consume_events
from shared import topology
from shared.broker import Publisher
from shared.events import BookingCustomerUpserted, CampaignAccepted, CampaignLifecycle, TenantChanged
from tests.integration.tracker.helpers import seed_tenant
from tests.support import IsolatedEnvironment


async def test_an_event_of_an_unknown_version_is_parked_with_the_reason_and_the_next_one_applies(
    pool: asyncpg.Pool, broker: Publisher, connection: AbstractRobustConnection
) -> None:
    # Given the booking consumer and a tenant
    await consume_booking(connection, broker, pool)
    tenant = await seed_tenant(pool)

    # When a customer arrives as version 2 (its fields would be valid in version 1), then one as v1
    future = {"v": 2, "tenant_id": str(tenant.id), "external_id": "v2", "phone": "+14155550122"}
    await broker.publish_raw(
        topology.BOOKING_EXCHANGE,
        BookingCustomerUpserted.TYPE,
        orjson.dumps(future),
        "booking.customer.upserted.v2",
    )
    current = BookingCustomerUpserted(tenant_id=tenant.id, external_id="v1", phone="+14155550121")
    await broker.publish(topology.BOOKING_EXCHANGE, current.TYPE, current)

    # Then the v1 customer is stored and the v2 one is parked, saying which version was refused
    deadline = asyncio.get_running_loop().time() + 15
    while asyncio.get_running_loop().time() < deadline:
        stored = await pool.fetch("SELECT external_id FROM customers WHERE tenant_id = $1", tenant.id)
        if stored:
            break
        await asyncio.sleep(0.05)
    assert [row["external_id"] for row in stored] == ["v1"]
    parked_queue = await broker.channel.get_queue(topology.parked_queue_name(topology.BOOKING_QUEUE))
    parked = None
    while parked is None and asyncio.get_running_loop().time() < deadline:
        parked = await parked_queue.get(no_ack=True, fail=False)
        await asyncio.sleep(0.05)
    assert parked is not None
    headers = parked.headers or {}
    assert headers[topology.PARK_REASON_HEADER] == "invalid"
    assert "unsupported version 2" in str(headers[topology.PARK_ERROR_HEADER])


class RecordingGate:
    def __init__(self) -> None:
        self.seen: list[tuple[uuid.UUID, str]] = []
        self.observed = asyncio.Event()

    def observe(self, campaign_id: uuid.UUID, state: str, reason: str | None = None) -> None:
        self.seen.append((campaign_id, state))
        self.observed.set()


class NoDirectory:
    def invalidate(self, tenant_id: uuid.UUID) -> None:
        pass


async def test_a_senders_event_queue_binds_the_lifecycle_keys_and_not_the_campaign_request_answers(
    isolated_env: IsolatedEnvironment, broker: Publisher, connection: AbstractRobustConnection
) -> None:
    # Given a sender's private event queue
    channel = await connection.channel()
    gate = RecordingGate()
    queue = await consume_events(channel, gate, NoDirectory())  # type: ignore[arg-type]

    # Then it is bound to each lifecycle key and tenant.changed, and to nothing broader
    listing = await asyncio.to_thread(
        subprocess.run,
        [
            "rabbitmqctl",
            "-q",
            "list_bindings",
            "-p",
            isolated_env.name,
            "source_name",
            "destination_name",
            "routing_key",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    listed = listing.stdout
    keys = {
        line.split("\t")[2]
        for line in listed.splitlines()
        if line.count("\t") == 2
        and line.split("\t")[1] == queue.name
        and line.split("\t")[0] == topology.EVENTS_EXCHANGE
    }
    assert keys == {*CampaignLifecycle.ROUTING_KEYS, TenantChanged.ROUTING_KEY}

    # And an answer to a campaign request never reaches it, while a lifecycle event does
    campaign_id = uuid.uuid4()
    accepted = CampaignAccepted.model_validate(
        {
            "tenant_id": str(uuid.uuid4()),
            "idempotency_key": "r1",
            "campaign_id": str(campaign_id),
            "state": "running",
        }
    )
    await broker.publish(topology.EVENTS_EXCHANGE, CampaignAccepted.ROUTING_KEY, accepted, mandatory=False)
    paused = CampaignLifecycle(
        event="paused",
        tenant_id=uuid.uuid4(),
        campaign_id=campaign_id,
        state="paused",
        at="2026-01-01T00:00:00Z",
    )
    await broker.publish(topology.EVENTS_EXCHANGE, paused.routing_key(), paused, mandatory=False)
    await asyncio.wait_for(gate.observed.wait(), timeout=10)
    await asyncio.sleep(0.5)  # time for a wrongly routed answer to arrive too
    assert gate.seen == [(campaign_id, "paused")]
    await channel.close()
