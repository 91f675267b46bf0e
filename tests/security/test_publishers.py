"""Who may publish for a tenant: booking events and campaign commands are accepted only from the
engine's own broker user or a broker user the operator allowed for the tenant they name; the
broker vouches for ``user_id``, and everything else is parked with the reason."""

from __future__ import annotations

import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import aio_pika
import aiormq
import asyncpg
import httpx
import orjson
import pytest

from services.segmenter import routes_publishers
from services.segmenter.booking.consumer import consume_booking
from services.segmenter.commands import consume_commands
from shared import topology
from shared.broker import Publisher, connect
from shared.events import BookingCustomerUpserted, CampaignCommand
from shared.publishers import PublisherCheck, engine_user
from tests.integration.booking.booking_api import new_tenant
from tests.integration.tracker.helpers import eventually
from tests.security.segmenter_app import OPERATOR, client, segmenter
from tests.support import IsolatedEnvironment, rabbitmqctl, with_vhost


@pytest.fixture(scope="module")
def integration_user(isolated_env: IsolatedEnvironment) -> Iterator[tuple[str, str]]:
    """A broker user as the README tells an operator to create it: write permission on the two
    exchanges only."""
    # Hex: a password that starts with "-" would be read by rabbitmqctl as an option.
    name, password = f"wce-test-crm-{secrets.token_hex(4)}", secrets.token_hex(16)
    rabbitmqctl("add_user", name, password)
    try:
        rabbitmqctl(
            "set_permissions", "-p", isolated_env.name, name, "^$", r"^wce\.(booking|commands)$", "^$"
        )
        yield name, password
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_user", name], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
async def engine(isolated_env: IsolatedEnvironment, pool: asyncpg.Pool) -> AsyncIterator[list[bytes]]:
    """The segmenter's booking and command consumers with the publisher check on; yields the
    bodies of the commands its (recording) handler accepted."""
    connection = await connect(isolated_env.amqp_url, retry_s=10)
    publisher = await Publisher.open(connection, timeout_s=5)
    await topology.declare_all(publisher.channel, [5])
    check = PublisherCheck(pool, engine_user=engine_user(isolated_env.amqp_url), enabled=True)
    accepted: list[bytes] = []

    async def record(body: bytes) -> None:
        accepted.append(body)

    channel = await connection.channel()
    await consume_commands(
        await channel.get_queue(topology.COMMANDS_QUEUE), publisher, {"campaign.pause": record}, check
    )
    await consume_booking(connection, publisher, pool, check)
    try:
        yield accepted
    finally:
        await connection.close()


async def publish_as(
    url: str, exchange: str, routing_key: str, body: dict[str, Any], user_id: str | None
) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange, ensure=False)
        message = aio_pika.Message(
            orjson.dumps(body), user_id=user_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        await target.publish(message, routing_key=routing_key, timeout=5)
    finally:
        await connection.close()


def customer(tenant_id: uuid.UUID, external_id: str) -> dict[str, Any]:
    return BookingCustomerUpserted(
        tenant_id=tenant_id, external_id=external_id, first_name="Ann", phone="+14155550123"
    ).model_dump(mode="json")


async def parked_errors(isolated_env: IsolatedEnvironment, queue: str) -> list[str]:
    """Every parked message's error, taken off the parked queue."""
    connection = await aio_pika.connect(isolated_env.amqp_url)
    errors = []
    try:
        channel = await connection.channel()
        dlq = await channel.get_queue(topology.parked_queue_name(queue))
        while (message := await dlq.get(no_ack=True, fail=False)) is not None:
            errors.append(str(message.headers.get(topology.PARK_ERROR_HEADER)))
    finally:
        await connection.close()
    return errors


@pytest.fixture
async def operator_api(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with client(segmenter(pool, routes_publishers.router)) as api:
        yield api


async def test_a_publisher_acts_only_for_the_tenants_it_is_allowed_for(
    isolated_env: IsolatedEnvironment,
    pool: asyncpg.Pool,
    engine: list[bytes],
    integration_user: tuple[str, str],
    operator_api: httpx.AsyncClient,
) -> None:
    # Given an integration's broker user the operator allowed for tenant A only
    name, password = integration_user
    tenant_a, _ = await new_tenant(pool)
    tenant_b, _ = await new_tenant(pool)
    allowed = await operator_api.put(
        f"/v1/operator/tenants/{tenant_a}/broker-publishers/{name}", headers=OPERATOR
    )
    assert allowed.status_code == 204
    listed = await operator_api.get(f"/v1/operator/tenants/{tenant_a}/broker-publishers", headers=OPERATOR)
    assert [entry["username"] for entry in listed.json()] == [name]
    url = with_vhost(f"amqp://{quote(name)}:{quote(password)}@127.0.0.1:5672/", isolated_env.name)
    await parked_errors(isolated_env, topology.BOOKING_QUEUE)

    # When it publishes a customer for A, one for B, and one without saying who it is
    marker = secrets.token_hex(4)
    await publish_as(
        url, topology.BOOKING_EXCHANGE, BookingCustomerUpserted.TYPE, customer(tenant_b, f"b-{marker}"), name
    )
    await publish_as(
        url, topology.BOOKING_EXCHANGE, BookingCustomerUpserted.TYPE, customer(tenant_a, f"n-{marker}"), None
    )
    await publish_as(
        url, topology.BOOKING_EXCHANGE, BookingCustomerUpserted.TYPE, customer(tenant_a, f"a-{marker}"), name
    )

    # Then only A's named one is applied (events are applied in order: the others came first)
    async def stored() -> list[str]:
        rows = await pool.fetch("SELECT external_id FROM customers WHERE external_id LIKE $1", f"%-{marker}")
        return [row["external_id"] for row in rows]

    assert await eventually(stored) == [f"a-{marker}"]

    # And the other two are parked with the reason
    errors = await eventually(lambda: parked_errors(isolated_env, topology.BOOKING_QUEUE))
    errors += await parked_errors(isolated_env, topology.BOOKING_QUEUE)
    assert len(errors) == 2
    assert any(f"may not publish for tenant {tenant_b}" in error for error in errors)
    assert any("no user_id" in error for error in errors)


async def test_a_command_for_another_tenant_is_parked_and_the_engines_own_pass(
    isolated_env: IsolatedEnvironment,
    pool: asyncpg.Pool,
    engine: list[bytes],
    integration_user: tuple[str, str],
) -> None:
    # Given the integration's user allowed for tenant A only
    name, password = integration_user
    tenant_a, _ = await new_tenant(pool)
    tenant_b, _ = await new_tenant(pool)
    await pool.execute("INSERT INTO broker_publishers (username, tenant_id) VALUES ($1, $2)", name, tenant_a)
    url = with_vhost(f"amqp://{quote(name)}:{quote(password)}@127.0.0.1:5672/", isolated_env.name)
    await parked_errors(isolated_env, topology.COMMANDS_QUEUE)
    engine.clear()

    def pause(tenant: uuid.UUID) -> dict[str, Any]:
        return CampaignCommand(tenant_id=tenant, campaign_id=uuid.uuid4()).model_dump(mode="json")

    # When it pauses a campaign of B and one of A, and the engine itself pauses one of B
    await publish_as(url, topology.COMMANDS_EXCHANGE, "campaign.pause", pause(tenant_b), name)
    await publish_as(url, topology.COMMANDS_EXCHANGE, "campaign.pause", pause(tenant_a), name)
    connection = await connect(isolated_env.amqp_url, retry_s=10)
    try:
        own = await Publisher.open(connection, timeout_s=5)
        await own.publish(topology.COMMANDS_EXCHANGE, "campaign.pause", CampaignCommand(**pause(tenant_b)))
    finally:
        await connection.close()

    # Then A's and the engine's reach the handler; B's from the integration is parked
    accepted = await eventually(lambda: _at_least(engine, 2))
    assert sorted(orjson.loads(body)["tenant_id"] for body in accepted) == sorted(
        [str(tenant_a), str(tenant_b)]
    )
    errors = await eventually(lambda: parked_errors(isolated_env, topology.COMMANDS_QUEUE))
    assert len(errors) == 1 and f"may not publish for tenant {tenant_b}" in errors[0]


async def _at_least(items: list[bytes], count: int) -> list[bytes] | None:
    return list(items) if len(items) >= count else None


async def test_the_broker_refuses_a_forged_user_id(
    isolated_env: IsolatedEnvironment, pool: asyncpg.Pool, integration_user: tuple[str, str]
) -> None:
    # Given the integration's user, when it claims to be the engine's user
    name, password = integration_user
    tenant_id, _ = await new_tenant(pool)
    url = with_vhost(f"amqp://{quote(name)}:{quote(password)}@127.0.0.1:5672/", isolated_env.name)

    # Then RabbitMQ itself refuses the message
    with pytest.raises((aiormq.exceptions.ChannelPreconditionFailed, aio_pika.exceptions.AMQPError)):
        await publish_as(
            url,
            topology.BOOKING_EXCHANGE,
            BookingCustomerUpserted.TYPE,
            customer(tenant_id, "forged"),
            "guest",
        )


async def test_allowing_a_publisher_for_an_unknown_tenant_is_404(operator_api: httpx.AsyncClient) -> None:
    answer = await operator_api.put(
        f"/v1/operator/tenants/{uuid.uuid4()}/broker-publishers/crm", headers=OPERATOR
    )
    assert answer.status_code == 404
    bad_name = await operator_api.put(
        f"/v1/operator/tenants/{uuid.uuid4()}/broker-publishers/a%20b", headers=OPERATOR
    )
    assert bad_name.status_code == 422
