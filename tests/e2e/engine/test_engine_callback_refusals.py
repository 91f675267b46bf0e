"""WhatsApp's spam (131048) and pair-rate (131056) refusals as real Twilio mostly reports them: in
the status callback, after the create was accepted. The recipient is sent again later instead of
failing — that message was not delivered, so sending again is not sending twice — without an
attempt counted, and a spam refusal holds its tenant while another tenant keeps sending."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.engine.engine_helpers import seed_customers, set_faults, simulator_stats, states
from tests.e2e.helpers import TenantHandle, create_campaign, new_tenant, wait_for_state
from tests.support import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

# A pair-rate refusal waits the 5 s tier (the first at least WCE_PAIR_RATE_RETRY_S), longer than
# the simulator's 4 s pair window: a number refused once is accepted when sent again. The spam
# hold is long enough for another tenant's campaign to run meanwhile on a busy machine.
PAIR_WINDOW_S = 4.0
STACK_ENV = {"WCE_RETRY_TIERS_S": "1,2,5", "WCE_SPAM_HOLD_S": "8", "WCE_PAIR_RATE_RETRY_S": "5"}
DELIVERED = {"delivered", "read"}


async def wait_delivered(
    pool: asyncpg.Pool, stack: Stack, campaign_id: str, total: int, timeout_s: float = 120
) -> dict[str, int]:
    """Until every recipient is delivered (or read): a ``sent`` one may still be refused."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = await states(pool, campaign_id)
        if sum(counts.get(state, 0) for state in DELIVERED) == total:
            return counts
        if "failed" in counts or "failed_delivery" in counts or time.monotonic() > deadline:
            raise AssertionError(f"not all delivered: {counts}\n{stack.logs()}")
        await asyncio.sleep(0.25)


async def refused_in_callbacks(pool: asyncpg.Pool, tenant: TenantHandle, code: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT recipient_id, from_state, to_state, detail FROM message_events"
        " WHERE tenant_id = $1 AND error_code = $2 AND source = 'callback'",
        uuid.UUID(tenant.id),
        code,
    )
    return rows


async def callback_errors(stack: Stack, code: int) -> float:
    """The tracker's count of Twilio error ``code`` reported in status callbacks."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{stack.tracker_url}/metrics")).text
    pattern = rf'^wce_twilio_errors_total\{{code="{code}",stage="callback"\}} ([0-9.e+]+)$'
    return sum(float(match.group(1)) for match in re.finditer(pattern, text, re.MULTILINE))


async def progress(stack: Stack, tenant: TenantHandle, campaign_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.tracker_url, headers=tenant.headers, timeout=30) as client:
        response = await client.get(f"/v1/campaigns/{campaign_id}/progress")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def test_numbers_refused_for_the_pair_rate_in_the_callback_are_sent_again_and_delivered_once(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a sender allowed one message per number every 4 s, whose refusals past it come in the
    # status callback after Twilio accepted the create
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 20)
    counted_before = await callback_errors(engine_stack, 131056)
    await set_faults(
        engine_stack,
        tenant.account_sid,
        pair_rate_limit=1,
        pair_rate_window_s=PAIR_WINDOW_S,
        rate_refusals_in_callback=True,
    )

    # When two campaigns go to the same 20 numbers at once
    first, second = await asyncio.gather(
        create_campaign(engine_stack, tenant), create_campaign(engine_stack, tenant)
    )

    # Then everyone of both is delivered in the end, none failed, and both campaigns complete
    for started in (first, second):
        counts = await wait_delivered(pool, engine_stack, started["id"], 20)
        assert set(counts) <= DELIVERED, counts
        await wait_for_state(engine_stack, tenant, started["id"], {"completed"}, timeout_s=60)

    # And the refused recipients went back to wait, their history saying why
    refused = await refused_in_callbacks(pool, tenant, 131056)
    assert refused, "no number was refused for the pair rate"
    assert {(row["from_state"], row["to_state"]) for row in refused} == {("sent", "retry_wait")}
    assert all("not counted as an attempt" in row["detail"] for row in refused)
    refused_ids = sorted({row["recipient_id"] for row in refused})
    assert len(refused_ids) == len(refused), "a number was refused more than once"

    # And every recipient was accepted at most twice (once when refused), delivered once, and
    # counts one attempt; the refused ones one deferral
    rows = await pool.fetch(
        "SELECT r.id, r.attempts, r.deferrals, r.error_code,"
        " (SELECT count(*) FROM message_events e WHERE e.recipient_id = r.id AND e.to_state = 'sent'"
        "  AND e.source = 'sender') AS accepted,"
        " (SELECT count(*) FROM message_events e WHERE e.recipient_id = r.id"
        "  AND e.to_state IN ('delivered', 'read') AND e.from_state NOT IN ('delivered', 'read'))"
        " AS delivered"
        " FROM recipients r WHERE r.campaign_id = ANY($1)",
        [uuid.UUID(first["id"]), uuid.UUID(second["id"])],
    )
    assert len(rows) == 40
    for row in rows:
        was_refused = row["id"] in refused_ids
        assert row["accepted"] == (2 if was_refused else 1), dict(row)
        assert (row["delivered"], row["attempts"], row["error_code"]) == (1, 1, None), dict(row)
        assert row["deferrals"] == (1 if was_refused else 0), dict(row)
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 40 + len(refused_ids)
    # And the tracker counted each refusal by its code, at the callback stage
    assert await callback_errors(engine_stack, 131056) - counted_before >= len(refused_ids)


async def test_a_spam_refusal_in_callbacks_holds_the_tenant_while_another_keeps_sending(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant whose sender Meta refuses for spam, reported in the status callbacks, and
    # another tenant nothing refuses
    tenant = await new_tenant(engine_stack, rate=80)
    await seed_customers(pool, tenant, 60)
    await set_faults(engine_stack, tenant.account_sid, spam_rate_limited=True, rate_refusals_in_callback=True)
    other = await new_tenant(engine_stack, rate=80)
    await seed_customers(pool, other, 60)

    # When the first sends a campaign
    started = await create_campaign(engine_stack, tenant)

    # Then it is held for the spam refusal, nothing failed, and no attempt counted
    deadline = time.monotonic() + 60
    while (await progress(engine_stack, tenant, started["id"]))["hold_reason"] != "spam_rate_limit":
        assert time.monotonic() < deadline, await progress(engine_stack, tenant, started["id"])
        await asyncio.sleep(0.2)
    refused = await refused_in_callbacks(pool, tenant, 131048)
    assert refused and {(row["from_state"], row["to_state"]) for row in refused} == {("sent", "retry_wait")}
    counts = await states(pool, started["id"])
    assert not {"failed", "failed_delivery", "undelivered"} & set(counts), counts

    # When the other tenant sends a campaign during the hold
    other_started = await create_campaign(engine_stack, other)

    # Then it is delivered to everyone while the first tenant is still held
    other_counts = await wait_delivered(pool, engine_stack, other_started["id"], 60)
    assert set(other_counts) <= DELIVERED, other_counts
    hold = await pool.fetchrow(
        "SELECT hold_reason, hold_until > now() AS holding FROM tenant_send_limits WHERE tenant_id = $1",
        uuid.UUID(tenant.id),
    )
    refused_after = await refused_in_callbacks(pool, tenant, 131048)
    assert hold["hold_reason"] == "spam_rate_limit"
    assert hold["holding"] or len(refused_after) > len(refused), "the hold ended before the other finished"

    # When Meta lets the sender send again
    await set_faults(engine_stack, tenant.account_sid, spam_rate_limited=False)

    # Then the hold ends by itself and everyone is delivered, each counting one attempt
    counts = await wait_delivered(pool, engine_stack, started["id"], 60)
    assert set(counts) <= DELIVERED, counts
    await wait_for_state(engine_stack, tenant, started["id"], {"completed"}, timeout_s=60)
    attempts = await pool.fetch(
        "SELECT attempts FROM recipients WHERE campaign_id = $1", uuid.UUID(started["id"])
    )
    assert {row["attempts"] for row in attempts} == {1}
