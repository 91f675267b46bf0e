"""Frequency caps through the whole engine: a tenant's cap set through its API holds across two
campaigns sent at once by two senders, the preview counts what the cap will skip, the recipient
log and CSV say why, and test sends and other tenants are not held back."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.engine.engine_helpers import api, seed_customers, simulator_stats, wait_settled
from tests.e2e.helpers import TenantHandle, create_campaign, new_tenant
from tests.support import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

SENDERS = 2
NUMBERS = 150


async def _preview(stack: Stack, tenant: TenantHandle) -> dict[str, Any]:
    response = await api(stack, tenant, "POST", "/v1/audiences/preview", json={"segment": "all_customers"})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def _two_campaigns_at_once(
    stack: Stack, pool: asyncpg.Pool, tenant: TenantHandle
) -> list[dict[str, int]]:
    started = await asyncio.gather(create_campaign(stack, tenant), create_campaign(stack, tenant))
    return [await wait_settled(pool, c["id"], NUMBERS, timeout_s=180, stack=stack) for c in started]


async def test_two_campaigns_at_once_under_a_cap_of_one_give_each_number_one_message(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant that caps marketing at 1 message per number per 7 days (a bad cap is refused
    # naming the field and changes nothing), and another tenant without a cap, both with the
    # same 150 customers' numbers
    capped = await new_tenant(engine_stack, rate=None, test_numbers=["+14152000000"])
    free = await new_tenant(engine_stack, rate=None)
    bad = await api(
        engine_stack, capped, "PATCH", "/v1/tenant", json={"frequency_cap": {"messages": 0, "days": 7}}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "frequency_cap.messages"
    assert (await api(engine_stack, capped, "GET", "/v1/tenant")).json()["frequency_cap"] is None
    response = await api(
        engine_stack, capped, "PATCH", "/v1/tenant", json={"frequency_cap": {"messages": 1, "days": 7}}
    )
    assert response.status_code == 200 and response.json()["frequency_cap"] == {"messages": 1, "days": 7}
    for tenant in (capped, free):
        await seed_customers(pool, tenant, NUMBERS)
    before = await _preview(engine_stack, capped)

    # When each tenant starts two campaigns to all of them at the same moment
    capped_counts, free_counts = await asyncio.gather(
        _two_campaigns_at_once(engine_stack, pool, capped), _two_campaigns_at_once(engine_stack, pool, free)
    )

    # Then every capped number got exactly one message, from one campaign or the other, and the
    # other campaign's row for it is skipped
    stats = await simulator_stats(engine_stack, capped.account_sid)
    assert stats["accepted_total"] == NUMBERS and not stats["duplicates"]
    assert sum(c.get("skipped", 0) for c in capped_counts) == NUMBERS
    assert sum(c.get("delivered", 0) + c.get("read", 0) + c.get("sent", 0) for c in capped_counts) == NUMBERS
    # And the tenant without a cap sent both campaigns to everyone
    assert (await simulator_stats(engine_stack, free.account_sid))["accepted_total"] == 2 * NUMBERS
    assert all(not c.get("skipped") for c in free_counts)
    assert (before["excluded"]["frequency_capped"], before["sendable"]) == (0, NUMBERS)

    # When 40 new customers arrive and the tenant previews the same audience again
    await seed_customers(pool, capped, 40, start=NUMBERS)
    preview = await _preview(engine_stack, capped)

    # Then the preview counts the 150 capped numbers among its 190 recipients
    assert (preview["total"], preview["excluded"]["frequency_capped"], preview["sendable"]) == (190, 150, 40)

    # And a campaign started now skips exactly those, saying why in its recipient log and CSV
    third = await create_campaign(engine_stack, capped)
    counts = await wait_settled(pool, third["id"], 190, timeout_s=180, stack=engine_stack)
    assert counts.get("skipped") == preview["excluded"]["frequency_capped"]
    assert 190 - counts["skipped"] == preview["sendable"]
    async with httpx.AsyncClient(
        base_url=engine_stack.tracker_url, timeout=60, headers=capped.headers
    ) as reads:
        exported = (await reads.get(f"/v1/campaigns/{third['id']}/recipients.csv")).text
        logged = (
            await reads.get(f"/v1/campaigns/{third['id']}/recipients", params={"state": "skipped"})
        ).json()
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {row["skip_reason"] for row in rows if row["state"] == "skipped"} == {"frequency_capped"}
    assert {row["skip_reason"] for row in rows if row["state"] != "skipped"} == {""}
    assert {item["skip_reason"] for item in logged["items"]} == {"frequency_capped"}

    # And a test send to a capped number is exempt: it is sent
    test_send = await api(engine_stack, capped, "POST", "/v1/sends/test", json={"template": {"body": "Test"}})
    assert test_send.status_code == 201, test_send.text
    test_counts = await wait_settled(pool, test_send.json()["id"], 1, timeout_s=60, stack=engine_stack)
    assert not test_counts.get("skipped"), test_counts
