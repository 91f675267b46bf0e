"""WhatsApp messaging limits end to end: a tenant's tier of unique numbers per moving window held
across its campaigns, holds shown and ended by themselves, and Meta's spam (131048) and pair-rate
(131056) refusals waiting instead of burning attempts — beside a tenant nothing limits.

The window is ten minutes here (``WCE_MESSAGING_WINDOW_S``) so that a loaded machine never sees
it move by itself; a test moves it by making the tenant's counted contacts and holds one window
older, as if that much time had passed, under the lock claims take."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.e2e.engine.engine_helpers import (
    api,
    operator,
    seed_customers,
    set_faults,
    simulator_stats,
    wait_sent,
    wait_settled,
)
from tests.e2e.engine.test_engine_faults import sender_metric
from tests.e2e.helpers import TenantHandle, campaign, create_campaign, new_tenant, phone, wait_for_state
from tests.support import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

WINDOW_S = 600.0
STACK_ENV = {
    "WCE_MESSAGING_WINDOW_S": str(WINDOW_S),
    "WCE_SPAM_HOLD_S": "3",
    "WCE_PAIR_RATE_RETRY_S": "2",
}
SENT = {"sent", "delivered", "read"}


async def limited_tenant(stack: Stack, tier: int, *, rate: int | None = 80) -> TenantHandle:
    tenant = await new_tenant(stack, rate=rate)
    response = await operator(
        stack, "PATCH", f"/v1/operator/tenants/{tenant.id}", json={"messaging_limit": tier}
    )
    assert response.status_code == 200, response.text
    assert response.json()["messaging_limit"] == tier
    return tenant


async def progress(stack: Stack, tenant: TenantHandle, campaign_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.tracker_url, headers=tenant.headers, timeout=30) as client:
        response = await client.get(f"/v1/campaigns/{campaign_id}/progress")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def wait_held(
    stack: Stack, tenant: TenantHandle, campaign_id: str, reason: str, timeout_s: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        current = await progress(stack, tenant, campaign_id)
        if current["hold_reason"] == reason:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"not held for {reason} after {timeout_s}s: {current}\n{stack.logs()}")
        await asyncio.sleep(0.2)


async def streamed_hold(stack: Stack, tenant: TenantHandle, campaign_id: str) -> dict[str, Any]:
    """The first progress event of the campaign's stream that shows a hold."""
    url = f"{stack.tracker_url}/v1/campaigns/{campaign_id}/progress/stream"
    async with (
        httpx.AsyncClient(timeout=30, headers=tenant.headers) as client,
        client.stream("GET", url) as stream,
    ):
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                body: dict[str, Any] = orjson.loads(line[5:])
                if body["hold_reason"] is not None:
                    return body
    raise AssertionError("the stream ended without a hold")


async def wait_sent_by(pool: asyncpg.Pool, tenant: TenantHandle, count: int, timeout_s: float = 60) -> None:
    """Until ``count`` of the tenant's recipients are sent and none is being sent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            "SELECT count(*) FILTER (WHERE state IN ('sent', 'delivered', 'read')) AS sent,"
            " count(*) FILTER (WHERE state = 'sending') AS sending FROM recipients WHERE tenant_id = $1",
            uuid.UUID(tenant.id),
        )
        if row["sent"] >= count and row["sending"] == 0:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"fewer than {count} sent after {timeout_s}s")


async def move_window(pool: asyncpg.Pool, tenant: TenantHandle) -> None:
    """As if a whole window had passed for the tenant's messaging limit."""
    tenant_id = uuid.UUID(tenant.id)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM tenant_send_limits WHERE tenant_id = $1 FOR UPDATE", tenant_id)
        for sql in (
            "UPDATE tenant_contacts SET last_contacted_at = last_contacted_at - make_interval(secs => $2)"
            " WHERE tenant_id = $1",
            "UPDATE tenant_send_limits SET counted_at = counted_at - make_interval(secs => $2)"
            " WHERE tenant_id = $1",
            "UPDATE campaigns SET hold_until = hold_until - make_interval(secs => $2)"
            " WHERE tenant_id = $1 AND hold_until IS NOT NULL",
        ):
            await conn.execute(sql, tenant_id, WINDOW_S)


async def claims(pool: asyncpg.Pool, tenant: TenantHandle) -> list[tuple[datetime, str]]:
    """Every claim of the tenant's numbers: when, and which number."""
    rows = await pool.fetch(
        "SELECT e.at, r.phone_e164 FROM message_events e JOIN recipients r ON r.id = e.recipient_id"
        " WHERE e.tenant_id = $1 AND e.to_state = 'sending' ORDER BY e.at",
        uuid.UUID(tenant.id),
    )
    return [(row["at"], row["phone_e164"]) for row in rows]


async def test_a_tier_250_tenant_sends_250_then_holds_with_the_reason_and_resumes_as_the_window_moves(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant limited to 250 numbers per window with 400 customers, and an unlimited tenant
    limited = await limited_tenant(engine_stack, 250)
    await seed_customers(pool, limited, 400)
    free = await new_tenant(engine_stack, rate=80)
    await seed_customers(pool, free, 300)
    holds_before = await sender_metric(engine_stack, "wce_campaign_holds_total")

    # When both start a campaign to all their customers
    started = await create_campaign(engine_stack, limited)
    other = await create_campaign(engine_stack, free)

    # Then the limited campaign sends 250 and holds, with its reason and when it goes on, in the
    # progress API, its event stream and the campaign API
    held = await wait_held(engine_stack, limited, started["id"], "messaging_limit")
    await wait_sent(pool, started["id"], 250)
    streamed = await streamed_hold(engine_stack, limited, started["id"])
    shown = await campaign(engine_stack, limited, started["id"])
    stats = await simulator_stats(engine_stack, limited.account_sid)
    assert stats["accepted_total"] == 250
    assert held["state"] == "running"
    assert streamed["hold_reason"] == shown["hold_reason"] == "messaging_limit"
    assert "messaging limit" in held["waiting"]
    until = datetime.fromisoformat(shown["hold_until"])
    first_claim = (await claims(pool, limited))[0][0]
    assert first_claim + timedelta(seconds=WINDOW_S) - timedelta(seconds=1) <= until
    assert until <= first_claim + timedelta(seconds=WINDOW_S + 5)
    # And nothing was lost or failed: the other 150 wait unclaimed
    waiting = await pool.fetch(
        "SELECT state, attempts FROM recipients"
        " WHERE campaign_id = $1 AND state NOT IN ('sent', 'delivered', 'read')",
        uuid.UUID(started["id"]),
    )
    assert len(waiting) == 150
    assert {row["state"] for row in waiting} <= {"pending", "queued"}
    assert {row["attempts"] for row in waiting} == {0}
    # And the unlimited tenant was not held: all 300 sent
    other_counts = await wait_settled(pool, other["id"], 300, timeout_s=120, stack=engine_stack)
    assert set(other_counts) <= SENT, other_counts
    assert (await progress(engine_stack, free, other["id"]))["hold_reason"] is None

    # When the window moves past the first sends
    await move_window(pool, limited)
    counts = await wait_settled(pool, started["id"], 400, timeout_s=120, stack=engine_stack)

    # Then the campaign went on by itself and completed: everyone sent once, nobody failed
    assert set(counts) <= SENT, counts
    await wait_for_state(engine_stack, limited, started["id"], {"completed"}, timeout_s=60)
    stats = await simulator_stats(engine_stack, limited.account_sid)
    assert stats["accepted_total"] == 400
    # And the hold was counted
    holds_after = await sender_metric(engine_stack, "wce_campaign_holds_total")
    key = f'reason="messaging_limit",tenant="{limited.id}"'
    assert holds_after.get(key, 0) > holds_before.get(key, 0)


async def test_two_sends_of_a_limited_tenant_at_once_never_pass_its_tier(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tier-250 tenant without a rate
    tenant = await limited_tenant(engine_stack, 250, rate=None)

    # When it sends two manual sends of 200 different numbers each at once (Twilio counts any
    # business-initiated message, so these count like campaigns)
    async def manual(numbers: list[str]) -> dict[str, Any]:
        body = {"template": {"body": "Hi!"}, "recipients": [{"phone": number} for number in numbers]}
        response = await api(engine_stack, tenant, "POST", "/v1/sends/manual", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    first, second = await asyncio.gather(
        manual([phone(i) for i in range(9000, 9200)]), manual([phone(i) for i in range(9200, 9400)])
    )
    await wait_sent_by(pool, tenant, 250)

    # Then 250 numbers were messaged in all, not one more, and each send with numbers left is held
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 250
    for started in (first, second):
        shown = await progress(engine_stack, tenant, started["id"])
        if shown["remaining"]:
            held = await wait_held(engine_stack, tenant, started["id"], "messaging_limit")
            assert held["state"] == "running" and held["counts"]["failed"] == 0
    sent = await pool.fetchval(
        "SELECT count(*) FROM recipients WHERE tenant_id = $1 AND state IN ('sent', 'delivered', 'read')",
        uuid.UUID(tenant.id),
    )
    assert sent == 250

    # And when the window moves both go on to the end, each number once
    await move_window(pool, tenant)
    await wait_settled(pool, first["id"], 200, timeout_s=120, stack=engine_stack)
    await wait_settled(pool, second["id"], 200, timeout_s=120, stack=engine_stack)
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 400


async def test_a_spam_refusal_holds_the_tenant_and_its_campaign_then_sends_everyone_without_burning_attempts(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant whose sender Meta refuses for spam (131048), and another tenant
    tenant = await new_tenant(engine_stack, rate=80)
    await seed_customers(pool, tenant, 60)
    await set_faults(engine_stack, tenant.account_sid, spam_rate_limited=True)
    other = await new_tenant(engine_stack, rate=80)
    await seed_customers(pool, other, 60)

    # When both send a campaign
    started = await create_campaign(engine_stack, tenant)
    other_started = await create_campaign(engine_stack, other)

    # Then the first is held for the spam limit, nothing failed and no attempt counted
    await wait_held(engine_stack, tenant, started["id"], "spam_rate_limit")
    failed = await pool.fetch(
        "SELECT attempts, error_code, error_message FROM recipients"
        " WHERE campaign_id = $1 AND state = 'failed'",
        uuid.UUID(started["id"]),
    )
    assert not failed, [dict(row) for row in failed[:3]]
    # (once the messages claimed before the hold are settled: a claim counts an attempt until then)
    deadline = time.monotonic() + 60
    sending = "SELECT count(*) FROM recipients WHERE campaign_id = $1 AND state = 'sending'"
    while await pool.fetchval(sending, uuid.UUID(started["id"])):
        assert time.monotonic() < deadline, "messages still being sent a minute into the hold"
        await asyncio.sleep(0.2)
    attempts = await pool.fetchval(
        "SELECT coalesce(sum(attempts), 0) FROM recipients WHERE campaign_id = $1", uuid.UUID(started["id"])
    )
    assert attempts == 0
    # And the other tenant's campaign was not held
    other_counts = await wait_settled(pool, other_started["id"], 60, timeout_s=120, stack=engine_stack)
    assert set(other_counts) <= SENT, other_counts

    # When Meta lets the sender send again
    await set_faults(engine_stack, tenant.account_sid, spam_rate_limited=False)

    # Then the hold ends by itself and everyone is sent, each with one attempt
    counts = await wait_settled(pool, started["id"], 60, timeout_s=120, stack=engine_stack)
    assert set(counts) <= SENT, counts
    rows = await pool.fetch(
        "SELECT attempts FROM recipients WHERE campaign_id = $1", uuid.UUID(started["id"])
    )
    assert {row["attempts"] for row in rows} == {1}
    refused = await pool.fetchval(
        "SELECT count(*) FROM message_events WHERE campaign_id = $1 AND error_code = 131048",
        uuid.UUID(started["id"]),
    )
    assert refused > 0


async def test_a_pair_rate_refusal_retries_that_number_later_without_counting_an_attempt(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a sender allowed one message per number every 3 seconds (131056 past it)
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 20)
    await set_faults(engine_stack, tenant.account_sid, pair_rate_limit=1, pair_rate_window_s=3.0)

    # When two campaigns go to the same 20 numbers at once
    first, second = await asyncio.gather(
        create_campaign(engine_stack, tenant), create_campaign(engine_stack, tenant)
    )

    # Then every number gets both messages in the end, none failed
    for started in (first, second):
        counts = await wait_settled(pool, started["id"], 20, timeout_s=120, stack=engine_stack)
        assert set(counts) <= SENT, counts
    # And the numbers refused for the pair rate were retried without an attempt counted
    refused = await pool.fetch(
        "SELECT DISTINCT recipient_id FROM message_events WHERE tenant_id = $1 AND error_code = 131056",
        uuid.UUID(tenant.id),
    )
    assert refused
    rows = await pool.fetch(
        "SELECT attempts, deferrals FROM recipients WHERE id = ANY($1)",
        [row["recipient_id"] for row in refused],
    )
    assert {row["attempts"] for row in rows} == {1}
    assert min(row["deferrals"] for row in rows) >= 1
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 40
