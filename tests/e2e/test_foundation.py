"""A real campaign through segmenter → dispatcher → sender → tracker on the real broker and
database, with the Twilio simulator; plus the foundation's isolation and bad-input guarantees."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import asyncpg
import httpx
import pytest

from shared import topology
from shared.twilio_signature import compute_signature
from shared.webhooks import status_callback_url
from tests.e2e.helpers import (
    create_campaign,
    customers,
    import_customers,
    new_tenant,
    wait_for_state,
)
from tests.support import IsolatedEnvironment, Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_2000_recipient_campaign_reaches_everyone_once_and_delivery_comes_from_signed_callbacks(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant with 2,000 customers
    tenant = await new_tenant(stack, rate=None)
    await import_customers(stack, tenant, customers(2000))

    # When it runs a campaign to all of them
    started = await create_campaign(stack, tenant)
    await wait_for_state(stack, tenant, started["id"], {"completed"}, timeout_s=180)
    async with SimulatorAdmin(stack.simulator_url) as sim:
        await sim.wait_callbacks_settled(tenant.account_sid, timeout_s=60)
        stats = await sim.stats(tenant.account_sid)

    # Then Twilio saw exactly one request per number
    assert stats["accepted_total"] == 2000
    assert len(stats["per_to"]) == 2000
    assert not stats["duplicates"]

    # And every recipient was sent, then delivered or read through signed status callbacks
    campaign_id = uuid.UUID(started["id"])
    states = await _wait_for_settled_delivery(pool, campaign_id)
    assert set(states) <= {"delivered", "read"}, states
    assert sum(states.values()) == 2000
    from_callbacks = await pool.fetchval(
        "SELECT count(DISTINCT recipient_id) FROM message_events"
        " WHERE campaign_id = $1 AND source = 'callback' AND to_state IN ('delivered', 'read')",
        campaign_id,
    )
    assert from_callbacks == 2000
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM message_events WHERE campaign_id = $1 AND to_state = 'sent'", campaign_id
        )
        == 2000
    )


async def _wait_for_settled_delivery(pool: asyncpg.Pool, campaign_id: uuid.UUID) -> dict[str, int]:
    states: dict[str, int] = {}
    for _ in range(120):
        rows = await pool.fetch(
            "SELECT state, count(*) AS n FROM recipients WHERE campaign_id = $1 GROUP BY state", campaign_id
        )
        states = {row["state"]: row["n"] for row in rows}
        if set(states) <= {"delivered", "read"}:
            return states
        await asyncio.sleep(0.5)
    return states


async def test_a_callback_with_a_wrong_signature_is_refused_and_changes_nothing(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a sent message of a tenant
    tenant = await new_tenant(stack, rate=None)
    await import_customers(stack, tenant, customers(3, start=50_000))
    started = await create_campaign(stack, tenant)
    await wait_for_state(stack, tenant, started["id"], {"completed"}, timeout_s=60)
    row = await pool.fetchrow(
        "SELECT id, twilio_sid, state FROM recipients"
        " WHERE campaign_id = $1 AND twilio_sid IS NOT NULL LIMIT 1",
        uuid.UUID(started["id"]),
    )
    assert row is not None
    events_before = await pool.fetchval(
        "SELECT count(*) FROM message_events WHERE recipient_id = $1", row["id"]
    )

    # When a callback signed with another token claims it failed
    url = status_callback_url(stack.tracker_url, tenant.id)
    params = {
        "MessageSid": row["twilio_sid"],
        "MessageStatus": "failed",
        "ErrorCode": "30008",
        "AccountSid": tenant.account_sid,
        "To": "whatsapp:+14155550000",
        "From": "whatsapp:+14155238886",
    }
    forged = compute_signature("not-the-tenant-token", url, params)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(url, data=params, headers={"X-Twilio-Signature": forged})

    # Then it is refused and nothing about the recipient changes
    assert response.status_code == 403
    await asyncio.sleep(1.0)
    after = await pool.fetchrow("SELECT state FROM recipients WHERE id = $1", row["id"])
    assert after["state"] != "failed_delivery"
    assert await pool.fetchval("SELECT count(*) FROM message_events WHERE recipient_id = $1", row["id"]) in (
        events_before,
        events_before + 1,  # a genuine callback of the simulator may still land meanwhile
    )
    assert not await pool.fetchval(
        "SELECT count(*) FROM message_events WHERE recipient_id = $1 AND to_state = 'failed_delivery'",
        row["id"],
    )


async def test_the_tenant_rate_caps_every_one_second_window_at_the_simulator(stack: Stack) -> None:
    # Given a tenant limited to 50 messages a second and 300 customers
    tenant = await new_tenant(stack, rate=50)
    await import_customers(stack, tenant, customers(300, start=10_000))

    # When its campaign runs
    started = await create_campaign(stack, tenant)
    await wait_for_state(stack, tenant, started["id"], {"completed"}, timeout_s=120)
    async with SimulatorAdmin(stack.simulator_url) as sim:
        stats = await sim.stats(tenant.account_sid)

    # Then no one-second window saw more than 50 requests, so it took at least 299/50 seconds
    assert stats["accepted_total"] == 300
    assert stats["max_in_any_second"] <= 50
    assert stats["last_at"] - stats["first_at"] >= 299 / 50


async def test_another_tenants_key_gets_404_on_campaign_progress_and_logs(stack: Stack) -> None:
    # Given a campaign of tenant A
    tenant_a = await new_tenant(stack)
    tenant_b = await new_tenant(stack)
    started = await create_campaign(stack, tenant_a, start=False)
    campaign_id = started["id"]

    # When tenant B asks for it, its progress or its logs
    async with httpx.AsyncClient(timeout=10, headers=tenant_b.headers) as client:
        answers = [
            await client.get(f"{stack.api_url}/v1/campaigns/{campaign_id}"),
            await client.post(f"{stack.api_url}/v1/campaigns/{campaign_id}/start"),
            await client.post(f"{stack.api_url}/v1/campaigns/{campaign_id}/pause"),
            await client.get(f"{stack.tracker_url}/v1/campaigns/{campaign_id}/progress"),
            await client.get(f"{stack.tracker_url}/v1/campaigns/{campaign_id}/recipients"),
            await client.get(f"{stack.tracker_url}/v1/campaigns/{campaign_id}/recipients.csv"),
        ]

    # Then every answer is 404, as if the campaign did not exist
    assert [a.status_code for a in answers] == [404] * len(answers)
    async with httpx.AsyncClient(timeout=10, headers=tenant_a.headers) as client:
        assert (await client.get(f"{stack.api_url}/v1/campaigns/{campaign_id}")).status_code == 200


async def test_malformed_json_and_unknown_fields_are_refused_naming_the_field(stack: Stack) -> None:
    tenant = await new_tenant(stack)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10, headers=tenant.headers) as client:
        malformed = await client.post(
            "/v1/campaigns",
            content=b'{"name": "x", "template": ',
            headers={"content-type": "application/json"},
        )
        unknown = await client.post(
            "/v1/campaigns", json={"name": "x", "template": {"body": "Hi"}, "colour": "red"}
        )
        bad_shortcode = await client.post(
            "/v1/campaigns", json={"name": "x", "template": {"body": "Hi {nickname}"}}
        )
        listed = await client.get("/v1/campaigns")

    assert malformed.status_code == 422
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["colour"]
    assert bad_shortcode.status_code == 422
    assert any("nickname" in e["message"] for e in bad_shortcode.json()["errors"])
    assert listed.json() == []


async def test_an_import_with_an_invalid_phone_is_refused_naming_the_row_and_writes_nothing(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    tenant = await new_tenant(stack)
    rows = customers(3, start=20_000)
    rows[1]["phone"] = "call me maybe"
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10, headers=tenant.headers) as client:
        response = await client.post("/v1/booking/customers:upsert", json={"rows": rows})

    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert "1" in error["field"] and "phone" in error["field"]
    assert (
        await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", uuid.UUID(tenant.id)) == 0
    )


async def test_a_malformed_message_on_the_send_queue_is_parked_with_its_reason_and_sending_goes_on(
    stack: Stack, isolated_env: IsolatedEnvironment
) -> None:
    # Given garbage published straight onto the send queue
    connection = await aio_pika.connect_robust(isolated_env.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(b"{not json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=topology.SEND_QUEUE,
        )

        # Then it lands in the parked queue with the reason
        parked = await channel.get_queue(topology.parked_queue_name(topology.SEND_QUEUE))
        message = None
        for _ in range(50):
            message = await parked.get(no_ack=True, fail=False)
            if message is not None:
                break
            await asyncio.sleep(0.2)
        assert message is not None
        assert message.body == b"{not json"
        assert message.headers[topology.PARK_ERROR_HEADER]

    # And a campaign still goes through
    tenant = await new_tenant(stack, rate=None)
    await import_customers(stack, tenant, customers(20, start=30_000))
    started = await create_campaign(stack, tenant)
    await wait_for_state(stack, tenant, started["id"], {"completed"}, timeout_s=60)


async def test_only_approved_content_templates_of_the_tenants_account_can_be_chosen(stack: Stack) -> None:
    # Given a tenant whose Twilio account has one approved and one rejected template
    tenant = await new_tenant(stack)
    async with httpx.AsyncClient(timeout=10) as client:
        listing = await client.get(
            f"{stack.simulator_url}/v1/ContentAndApprovals", auth=(tenant.account_sid, tenant.auth_token)
        )
    contents = listing.json()["contents"]
    status_of = {c["sid"]: c["approval_requests"]["status"] for c in contents}
    approved = next(sid for sid, status in status_of.items() if status == "approved")
    rejected = next(sid for sid, status in status_of.items() if status != "approved")

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10, headers=tenant.headers) as client:
        offered = (await client.get("/v1/templates")).json()
        # When it creates campaigns with each
        accepted = await client.post(
            "/v1/campaigns",
            json={
                "name": "t",
                "template": {"content_sid": approved, "variables": {"1": "{customer_first_name}"}},
            },
        )
        refused = await client.post(
            "/v1/campaigns", json={"name": "t", "template": {"content_sid": rejected}}
        )

    # Then only the approved one is offered and accepted
    assert [t["sid"] for t in offered] == [approved]
    assert accepted.status_code == 201, accepted.text
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "template.content_sid"
