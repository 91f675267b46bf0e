"""Operators list, inspect, replay and purge parked messages (API and CLI), on the real broker:
a booking event parked because its tenant did not exist yet is replayed once the tenant exists."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from aio_pika.abc import AbstractRobustConnection
from fastapi import FastAPI

from services.segmenter import routes_parked
from services.segmenter.booking.consumer import consume_booking
from shared import topology
from shared.broker import BrokerUnavailable, Publisher, connect
from shared.events import BookingCustomerUpserted
from shared.http import install_common
from shared.parked import ParkedQueues
from shared.settings import Settings
from tests.integration.tracker.helpers import eventually
from tests.support import OPERATOR_TOKEN, IsolatedEnvironment, free_port

QUEUE = topology.BOOKING_QUEUE
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture(scope="module")
async def api(pool: asyncpg.Pool, connection: AbstractRobustConnection) -> AsyncIterator[str]:
    """The parked-message routes served over HTTP, with the booking consumer running."""
    publisher = await Publisher.open(connection, timeout_s=5)
    await topology.declare_all(publisher.channel, [5])
    await consume_booking(connection, publisher, pool)
    app = FastAPI()
    install_common(app, {})
    app.include_router(routes_parked.router)
    app.state.settings, app.state.pool = Settings(), pool
    app.state.broker, app.state.publisher = connection, publisher
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def cli(api: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wce_cli",
        "parked",
        *args,
        "--api-url",
        api,
        "--token",
        OPERATOR_TOKEN,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def parked_now(http: httpx.AsyncClient) -> dict[str, Any]:
    answer = await http.get(f"/v1/operator/parked/{QUEUE}", headers=AUTH, params={"limit": 50})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_parked_messages_are_listed_inspected_replayed_once_fixed_and_purged(
    api: str, pool: asyncpg.Pool, connection: AbstractRobustConnection
) -> None:
    # Given two customers of a tenant that does not exist yet, parked by the booking consumer
    publisher = await Publisher.open(connection, timeout_s=5)
    tenant_id = uuid.uuid4()
    for external_id in ("early-1", "early-2"):
        event = BookingCustomerUpserted(tenant_id=tenant_id, external_id=external_id, phone="+14155550130")
        await publisher.publish(topology.BOOKING_EXCHANGE, event.TYPE, event)
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:

        async def both_parked() -> bool:
            return (await parked_now(http))["parked"] == 2

        assert await eventually(both_parked)

        # When an operator lists the queues (API and CLI)
        listed = (await http.get("/v1/operator/parked", headers=AUTH)).json()["queues"]
        # Then the booking queue shows its two, the most parked first (the session's vhost may hold
        # what other tests parked), and every work queue is there
        assert {"queue": QUEUE, "parked": 2} in listed
        assert [row["parked"] for row in listed] == sorted((row["parked"] for row in listed), reverse=True)
        assert {row["queue"] for row in listed} >= {spec.name for spec in topology.WORK_QUEUES}
        code, output = await cli(api, "list")
        assert code == 0 and QUEUE in output and "2" in output, output

        # When the operator inspects them
        shown = await parked_now(http)
        # Then each has an id, the reason, the error naming the tenant, its origin and body, and
        # inspecting took none of them away
        assert [m["reason"] for m in shown["messages"]] == ["rejected", "rejected"]
        assert all(f"unknown tenant {tenant_id}" in m["error"] for m in shown["messages"])
        assert {m["routing_key"] for m in shown["messages"]} == {BookingCustomerUpserted.TYPE}
        assert all(m["source_queue"] == QUEUE and m["delivery_count"] == 1 for m in shown["messages"])
        assert "early-1" in shown["messages"][0]["body"]
        first_id, second_id = (m["id"] for m in shown["messages"])
        code, output = await cli(api, "show", QUEUE)
        assert code == 0 and first_id in output and "unknown tenant" in output, output
        assert (await parked_now(http))["parked"] == 2

        # When the tenant is created and the first message replayed by its id (through the CLI)
        await pool.execute(
            "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from)"
            " VALUES ($1, 'seeded late', $2, 'x', '+14155238886')",
            tenant_id,
            "AC" + tenant_id.hex,
        )
        code, output = await cli(api, "replay", QUEUE, "--id", first_id)
        assert code == 0 and "replayed 1" in output, output

        # Then its customer is stored, and the other one is still parked
        async def stored() -> list[str]:
            rows = await pool.fetch("SELECT external_id FROM customers WHERE tenant_id = $1", tenant_id)
            return [row["external_id"] for row in rows]

        assert await eventually(stored) == ["early-1"]
        remaining = await parked_now(http)
        assert [m["id"] for m in remaining["messages"]] == [second_id]

        # When the operator purges the rest
        purged = await http.post(f"/v1/operator/parked/{QUEUE}/purge", headers=AUTH, json={"all": True})
        # Then nothing is parked and nothing else was applied
        assert purged.json() == {"queue": QUEUE, "purged": 1}
        assert (await parked_now(http))["parked"] == 0
        await asyncio.sleep(0.3)
        assert await stored() == ["early-1"]
    await pool.execute("DELETE FROM customers WHERE tenant_id = $1", tenant_id)
    await pool.execute("DELETE FROM tenants WHERE id = $1", tenant_id)


async def test_the_parked_routes_refuse_unknown_queues_bad_selections_and_missing_tokens(api: str) -> None:
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        unknown = await http.get("/v1/operator/parked/wce.nothing", headers=AUTH)
        assert unknown.status_code == 404 and "wce.nothing" in unknown.json()["detail"]
        both = await http.post(
            f"/v1/operator/parked/{QUEUE}/replay", headers=AUTH, json={"ids": ["a"], "all": True}
        )
        assert both.status_code == 422
        neither = await http.post(f"/v1/operator/parked/{QUEUE}/purge", headers=AUTH, json={})
        assert neither.status_code == 422
        anonymous = await http.get("/v1/operator/parked")
        assert anonymous.status_code == 401


@pytest.mark.parametrize("operation", ["list", "inspect", "replay", "purge"])
async def test_a_parked_operation_reports_a_lost_broker_as_unavailable(
    isolated_env: IsolatedEnvironment, operation: str
) -> None:
    # Given the parked queues of a broker connection that is gone
    connection = await connect(isolated_env.amqp_url, retry_s=10)
    parked = ParkedQueues(connection, await Publisher.open(connection, timeout_s=5))
    await connection.close()
    calls = {
        "list": lambda: parked.counts([QUEUE]),
        "inspect": lambda: parked.inspect(QUEUE, limit=1),
        "replay": lambda: parked.replay(QUEUE, ids=None, limit=1),
        "purge": lambda: parked.purge(QUEUE, ids=None, limit=1),
    }
    # When an operator lists, inspects, replays or purges, Then the broker is reported unavailable
    # (the error the routes answer 503 for), not with an error of the client library
    with pytest.raises(BrokerUnavailable):
        await calls[operation]()
