"""Quiet hours through the whole stack: a campaign that reaches the end of its tenant's sending
window holds — nothing claimed, nothing lost, progress saying it waits for the window and when it
opens — and resumes by itself at the next opening, while another tenant without a window keeps
sending. The services' time is moved through the clock's offset file, never waited for."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from shared.clock import set_offset
from tests.e2e.engine.engine_helpers import (
    api,
    seed_customers,
    sent_count,
    simulator_stats,
    states,
    wait_sent,
    wait_settled,
)
from tests.e2e.helpers import TenantHandle, create_campaign, new_tenant
from tests.support import Stack
from wce_cli.client import TrackerClient

CLOCK_FILE = Path(tempfile.mkdtemp(prefix="wce-clock-")) / "offset"
set_offset(CLOCK_FILE, 0.0)
STACK_ENV = {"WCE_CLOCK_OFFSET_FILE": str(CLOCK_FILE)}

NEW_YORK = ZoneInfo("America/New_York")
WINDOW = {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "start": "09:00", "end": "20:00"}


def move_clock_to(local: datetime) -> None:
    """Make the services' now the New York wall-clock time ``local``."""
    set_offset(CLOCK_FILE, local.replace(tzinfo=NEW_YORK).timestamp() - time.time())


async def progress(stack: Stack, tenant: TenantHandle, campaign_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.tracker_url, timeout=30, headers=tenant.headers) as client:
        response = await client.get(f"/v1/campaigns/{campaign_id}/progress")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.2)


async def test_a_campaign_holds_at_the_end_of_the_window_and_resumes_at_the_next_opening(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given Wednesday 2026-12-09, 19:59 in New York; a tenant sending Mon-Sat 09:00-20:00 there,
    # and another tenant without a window, both with 300 customers at 10 messages a second
    move_clock_to(datetime(2026, 12, 9, 19, 0))
    windowed = await new_tenant(engine_stack, rate=10, timezone="America/New_York")
    always = await new_tenant(engine_stack, rate=10, timezone="America/New_York")
    response = await api(engine_stack, windowed, "PUT", "/v1/tenant/sending-window", json=WINDOW)
    assert response.status_code == 200, response.text
    assert response.json()["open_now"] is True
    for tenant in (windowed, always):
        await seed_customers(pool, tenant, 300)
    # When both campaigns start and the windowed one has sent some messages
    held = (await create_campaign(engine_stack, windowed))["id"]
    free = (await create_campaign(engine_stack, always))["id"]
    await wait_sent(pool, held, 20)
    # And the window's end comes (20:00:01 local)
    move_clock_to(datetime(2026, 12, 9, 20, 0, 1))

    # Then the campaign holds, still running, until Thursday 09:00 New York time
    opens = datetime(2026, 12, 10, 9, 0, tzinfo=NEW_YORK)

    async def holding() -> dict[str, Any] | None:
        shown = (await api(engine_stack, windowed, "GET", f"/v1/campaigns/{held}")).json()
        return shown if shown["hold_reason"] == "sending_window" else None

    shown = await wait_for(holding, 30, "the campaign never held")
    assert shown["state"] == "running"
    assert datetime.fromisoformat(shown["hold_until"]) == opens
    # And progress says what it waits for and when that opens, with a finish after it
    report = await progress(engine_stack, windowed, held)
    assert report["waiting"] == f"waiting for the sending window (opens {opens.astimezone(UTC).isoformat()})"
    assert datetime.fromisoformat(report["hold_until"]) == opens
    assert datetime.fromisoformat(report["estimated_finish"]) > opens
    # And its event stream says the same
    async with TrackerClient(engine_stack.tracker_url, windowed.api_key) as tracker:
        updates = tracker.follow(held, stream=True)
        streamed = await anext(updates)
        await updates.aclose()  # type: ignore[attr-defined]
    assert streamed["waiting"] == report["waiting"] and streamed["hold_until"] == report["hold_until"]
    # And once the messages in flight are settled, nothing is claimed or sent any more
    await asyncio.sleep(2)
    quiet_from = await pool.fetchval("SELECT now()")
    before = await sent_count(pool, held)
    others_before = await sent_count(pool, free)
    await asyncio.sleep(4)
    counts = await states(pool, held)
    assert await sent_count(pool, held) == before < 300
    assert counts.get("sending", 0) == 0
    # While the tenant without a window keeps sending
    assert await sent_count(pool, free) > others_before
    quiet_to = await pool.fetchval("SELECT now()")

    # When the clock comes to two seconds before Thursday's opening
    move_clock_to(datetime(2026, 12, 10, 8, 59, 58))
    # Then the campaign resumes by itself and completes, every recipient sent exactly once
    await wait_for(
        lambda: _released(engine_stack, windowed, held), 30, "the campaign was not released at the opening"
    )
    counts = await wait_settled(pool, held, 300, timeout_s=240, stack=engine_stack)
    assert set(counts) <= {"sent", "delivered", "read"}
    stats = await simulator_stats(engine_stack, windowed.account_sid)
    assert stats["accepted_total"] == 300 and not stats["duplicates"]
    # And no recipient was claimed while the window was closed
    claims_while_closed = await pool.fetchval(
        "SELECT count(*) FROM message_events"
        " WHERE campaign_id = $1 AND to_state = 'sending' AND at BETWEEN $2 AND $3",
        uuid.UUID(held),
        quiet_from,
        quiet_to,
    )
    assert claims_while_closed == 0
    await wait_settled(pool, free, 300, timeout_s=120, stack=engine_stack)


async def _released(stack: Stack, tenant: TenantHandle, campaign_id: str) -> bool:
    shown = (await api(stack, tenant, "GET", f"/v1/campaigns/{campaign_id}")).json()
    return bool(shown["hold_reason"] is None and shown["state"] in ("running", "completed"))


async def test_a_window_in_recipients_zones_keeps_each_recipient_back_until_their_own_opening(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given Wednesday 15:00 in New York, 21:00 in Paris; a New York tenant sending Mon-Sat
    # 09:00-20:00 in each recipient's own zone, with 10 US and 10 French customers
    move_clock_to(datetime(2026, 12, 9, 15, 0))
    tenant = await new_tenant(engine_stack, rate=20, timezone="America/New_York")
    window = {**WINDOW, "recipient_timezone": True}
    response = await api(engine_stack, tenant, "PUT", "/v1/tenant/sending-window", json=window)
    assert response.status_code == 200, response.text
    await seed_customers(pool, tenant, 10)
    await pool.execute(
        "INSERT INTO customers (tenant_id, external_id, first_name, phone_raw, phone_e164)"
        " SELECT $1, 'fr-' || i, 'Amélie', p, p FROM generate_series(1, 10) AS i,"
        " LATERAL (SELECT '+336120000' || lpad(i::text, 2, '0')) AS x(p)",
        uuid.UUID(tenant.id),
    )
    # When the campaign runs
    campaign_id = (await create_campaign(engine_stack, tenant))["id"]
    await wait_sent(pool, campaign_id, 10)

    # Then the US recipients (the tenant's zone: their country has several) are sent to, and the
    # French ones wait, unclaimed, for 09:00 in Paris
    async def french_waiting() -> list[asyncpg.Record] | None:
        rows = await pool.fetch(
            "SELECT state, next_attempt_at, attempts FROM recipients"
            " WHERE campaign_id = $1 AND phone_e164 LIKE '+33%'",
            uuid.UUID(campaign_id),
        )
        return rows if rows and all(row["state"] == "retry_wait" for row in rows) else None

    waiting = await wait_for(french_waiting, 30, "the French recipients did not wait")
    paris_opening = datetime(2026, 12, 10, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert {row["next_attempt_at"] for row in waiting} == {paris_opening}
    assert {row["attempts"] for row in waiting} == {0}
    us = await pool.fetchval(
        "SELECT count(*) FROM recipients WHERE campaign_id = $1 AND phone_e164 LIKE '+1%'"
        " AND state IN ('sent', 'delivered', 'read')",
        uuid.UUID(campaign_id),
    )
    assert us == 10

    # When Paris's window opens
    move_clock_to(paris_opening.astimezone(NEW_YORK).replace(tzinfo=None))
    # Then the French recipients are sent to by themselves, each once
    counts = await wait_settled(pool, campaign_id, 20, timeout_s=120, stack=engine_stack)
    assert set(counts) <= {"sent", "delivered", "read"}
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 20 and not stats["duplicates"]
