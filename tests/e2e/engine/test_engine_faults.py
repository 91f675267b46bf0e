"""Twilio misbehaving: errors before and after a message is created, rate limits, permanent
errors, bad credentials, an error storm; and a poison message on the send queue."""

from __future__ import annotations

import asyncio
import re
import uuid

import aio_pika
import asyncpg
import httpx
import orjson
import pytest

from shared import topology
from tests.e2e.engine.engine_helpers import (
    api,
    seed_customers,
    set_faults,
    simulator_stats,
    states,
    wait_settled,
)
from tests.e2e.helpers import create_campaign, new_tenant, wait_for_state
from tests.support import OPERATOR_TOKEN, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

STACK_ENV = {"WCE_MAX_ATTEMPTS": "12"}


async def sender_metric(stack: Stack, name: str) -> dict[str, float]:
    """Sum of a sender metric over both senders, by its label set."""
    totals: dict[str, float] = {}
    for process_name, process in stack.processes.items():
        if not process_name.startswith("sender"):
            continue
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(process.health_url.replace("/healthz", "/metrics"))).text  # type: ignore[union-attr]
        for match in re.finditer(rf"^{name}\{{(.*)\}} ([0-9.e+]+)$", text, re.MULTILINE):
            totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(2))
    return totals


async def test_with_5xx_before_accept_and_429s_everyone_is_sent_and_permanent_errors_fail_once(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a Twilio that fails 30% of creates with a 5xx before accepting and 10% with a 429,
    # and four numbers that always get a permanent error
    tenant = await new_tenant(engine_stack, rate=None)
    numbers = await seed_customers(pool, tenant, 1000)
    permanent = {numbers[1]: 21211, numbers[2]: 21610, numbers[3]: 21614, numbers[4]: 21408}
    await set_faults(
        engine_stack,
        tenant.account_sid,
        p_5xx_before=0.3,
        p_429=0.1,
        retry_after_s=1,
        permanent_errors=permanent,
    )

    # When a campaign to all 1,000 runs
    started = await create_campaign(engine_stack, tenant)
    counts = await wait_settled(pool, started["id"], 1000, timeout_s=240, stack=engine_stack)
    await wait_for_state(engine_stack, tenant, started["id"], {"completed"}, timeout_s=60)

    # Then everyone else was sent, exactly once
    assert counts.get("failed") == 4, counts
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 996
    assert not stats["duplicates"]
    # And each permanent error failed after one attempt, keeping Twilio's code and message
    failed = await pool.fetch(
        "SELECT phone_e164, attempts, error_code, error_message FROM recipients"
        " WHERE campaign_id = $1 AND state = 'failed'",
        uuid.UUID(started["id"]),
    )
    assert {row["phone_e164"]: row["error_code"] for row in failed} == permanent
    assert all(row["attempts"] == 1 and row["error_message"] for row in failed)
    # And the number that opted out (21610) is now suppressed
    source = await pool.fetchval(
        "SELECT source FROM suppressions WHERE tenant_id = $1 AND phone_e164 = $2",
        uuid.UUID(tenant.id),
        numbers[2],
    )
    assert source == "error_code"
    # And the retries went through the tiers
    retries = await sender_metric(engine_stack, "wce_retries_total")
    tiers = {re.search(r'tier="([^"]+)"', labels).group(1) for labels in retries}  # type: ignore[union-attr]
    assert {"1s", "2s"} <= tiers, retries
    waits = await pool.fetchval(
        "SELECT count(*) FROM message_events WHERE campaign_id = $1 AND to_state = 'retry_wait'",
        uuid.UUID(started["id"]),
    )
    assert waits > 100

    # When the permanent errors are cleared and the failed recipients retried
    await set_faults(engine_stack, tenant.account_sid, permanent_errors={n: None for n in permanent})
    response = await api(engine_stack, tenant, "POST", f"/v1/campaigns/{started['id']}/retry-failed")
    assert response.status_code == 200, response.text
    # Then they are sent too (the opted-out one is now suppressed), and nobody twice
    counts = await wait_settled(pool, started["id"], 1000, timeout_s=120, stack=engine_stack)
    assert counts.get("suppressed") == 1 and "failed" not in counts, counts
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 999 and not stats["duplicates"]


async def test_answers_lost_after_twilio_created_the_message_are_reconciled_not_resent(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a Twilio that creates the message but then answers 5xx (8%) or not at all (5%)
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 600, start=10_000)
    await set_faults(
        engine_stack, tenant.account_sid, p_5xx_after=0.08, p_timeout_after=0.05, timeout_hang_s=6
    )

    # When a campaign runs
    started = await create_campaign(engine_stack, tenant)
    counts = await wait_settled(pool, started["id"], 600, timeout_s=180, stack=engine_stack)

    # Then every recipient is sent, the ambiguous ones found in Twilio's list, none sent twice
    assert set(counts) <= {"sent", "delivered", "read"}, counts
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 600 and not stats["duplicates"]
    reconciled = await pool.fetchval(
        "SELECT count(*) FROM message_events"
        " WHERE campaign_id = $1 AND source = 'reconciler' AND to_state = 'sent'",
        uuid.UUID(started["id"]),
    )
    assert reconciled >= 20
    # And each reconciled row carries the sid Twilio gave the message
    missing_sid = await pool.fetchval(
        "SELECT count(*) FROM recipients WHERE campaign_id = $1 AND twilio_sid IS NULL",
        uuid.UUID(started["id"]),
    )
    assert missing_sid == 0


async def test_an_authentication_error_pauses_the_campaign_without_using_attempts(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant whose stored auth token Twilio does not accept
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 300, start=20_000)
    async with httpx.AsyncClient(base_url=engine_stack.api_url, timeout=30) as client:
        response = await client.patch(
            f"/v1/operator/tenants/{tenant.id}",
            json={"twilio_auth_token": "wrong-token"},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
    response.raise_for_status()

    # When its campaign starts
    started = await create_campaign(engine_stack, tenant)

    # Then the campaign pauses with the reason, nothing was accepted and no attempt was used
    paused = await wait_for_state(engine_stack, tenant, started["id"], {"paused"}, timeout_s=60)
    assert paused["pause_reason"] == "twilio_auth_error"
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 0
    await asyncio.sleep(1)
    assert (
        await pool.fetchval(
            "SELECT max(attempts) FROM recipients WHERE campaign_id = $1", uuid.UUID(started["id"])
        )
        == 0
    )

    # When the token is fixed and the campaign resumed / Then it completes
    async with httpx.AsyncClient(base_url=engine_stack.api_url, timeout=30) as client:
        response = await client.patch(
            f"/v1/operator/tenants/{tenant.id}",
            json={"twilio_auth_token": tenant.auth_token},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
    response.raise_for_status()
    response = await api(engine_stack, tenant, "POST", f"/v1/campaigns/{started['id']}/resume")
    assert response.status_code == 200, response.text
    await wait_settled(pool, started["id"], 300, timeout_s=120, stack=engine_stack)
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 300 and not stats["duplicates"]


async def test_an_error_storm_pauses_the_campaign_with_the_error_rate_reason(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a campaign where 90% of the numbers are invalid
    tenant = await new_tenant(engine_stack, rate=100)
    numbers = await seed_customers(pool, tenant, 800, start=30_000)
    await set_faults(
        engine_stack,
        tenant.account_sid,
        permanent_errors={n: 21211 for i, n in enumerate(numbers) if i % 10},
    )

    # When it runs
    started = await create_campaign(engine_stack, tenant)

    # Then it is paused for its error rate long before the end
    paused = await wait_for_state(engine_stack, tenant, started["id"], {"paused"}, timeout_s=60)
    assert paused["pause_reason"] == "error_rate"
    counts = await states(pool, started["id"])
    assert counts.get("pending", 0) + counts.get("queued", 0) > 300, counts


async def test_a_poison_message_on_the_send_queue_is_parked_and_sending_goes_on(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given garbage and a chunk that breaks the schema on the send queue
    connection = await aio_pika.connect(engine_stack.env["WCE_AMQP_URL"])
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(topology.SEND_EXCHANGE)
        await exchange.publish(aio_pika.Message(b"\x00not json"), routing_key=topology.SEND_ROUTING_KEY)
        bad_chunk = {"tenant_id": str(uuid.uuid4()), "campaign_id": "nope", "recipient_ids": []}
        await exchange.publish(
            aio_pika.Message(orjson.dumps(bad_chunk)), routing_key=topology.SEND_ROUTING_KEY
        )

        # Then both are parked with their reason
        parked = await channel.get_queue(topology.parked_queue_name(topology.SEND_QUEUE), ensure=False)
        reasons = []
        for _ in range(100):
            message = await parked.get(fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            reasons.append(str(message.headers[topology.PARK_ERROR_HEADER]))
            await message.ack()
            if len(reasons) == 2:
                break
        assert len(reasons) == 2 and all("invalid send.chunk" in reason for reason in reasons), reasons
    finally:
        await connection.close()

    # And the senders keep sending
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 50, start=40_000)
    started = await create_campaign(engine_stack, tenant)
    await wait_settled(pool, started["id"], 50, timeout_s=60, stack=engine_stack)
