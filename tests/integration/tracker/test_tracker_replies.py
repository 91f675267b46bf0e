"""Replies: each inbound message is attributed to the last message its number got from the engine
in the 24 hours before it, and read per tenant, per campaign and per recipient — never across
tenants."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import asyncpg
import httpx

from tests.integration.tracker.helpers import (
    RunningTracker,
    SeededRecipient,
    SeededTenant,
    eventually,
    phone,
    seed_campaign,
    seed_recipients,
    seed_tenant,
)


async def _sent(
    pool: asyncpg.Pool, tenant: SeededTenant, *, hours_ago: list[float], start: int = 0
) -> tuple[uuid.UUID, list[SeededRecipient]]:
    """A campaign started two days ago whose message to phone(start + i) was sent ``hours_ago[i]``
    hours ago."""
    campaign_id = await seed_campaign(pool, tenant.id)
    await pool.execute(
        "UPDATE campaigns SET started_at = now() - interval '2 days' WHERE id = $1", campaign_id
    )
    recipients = await seed_recipients(pool, tenant.id, campaign_id, len(hours_ago), start=start)
    for recipient, hours in zip(recipients, hours_ago, strict=True):
        await pool.execute(
            "UPDATE recipients SET sent_at = now() - make_interval(secs => $2), claimed_at = sent_at"
            " WHERE id = $1",
            recipient.id,
            hours * 3600,
        )
    return campaign_id, recipients


async def _stored(pool: asyncpg.Pool, tenant: SeededTenant, count: int) -> bool:
    stored = await pool.fetchval("SELECT count(*) FROM inbound_messages WHERE tenant_id = $1", tenant.id)
    return bool(stored == count)


async def _all_pages(client: httpx.AsyncClient, url: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (await client.get(url, params={"after": after, "limit": limit})).json()
        items += page["items"]
        if page["next_after"] is None:
            return items
        after = page["next_after"]


async def test_replies_belong_to_the_last_message_of_the_day_before_and_read_per_campaign_and_recipient(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given tenant A's first campaign, sent 3 h ago to numbers 0 and 1 and 25 h ago to number 2,
    # its second campaign sent 1 h ago to number 1, and tenant B's campaign sent to number 0
    # a minute ago (the same number, another business)
    a = await seed_tenant(pool)
    b = await seed_tenant(pool)
    first, first_recipients = await _sent(pool, a, hours_ago=[3, 3, 25], start=700)
    second, second_recipients = await _sent(pool, a, hours_ago=[1], start=701)
    other, _ = await _sent(pool, b, hours_ago=[0.02], start=700)

    # When numbers 0, 1 and 2 reply to A, and number 0 then sends STOP
    async with httpx.AsyncClient(timeout=10) as client:
        replies = ((700, "Yes please"), (701, "What time?"), (702, "Who is this?"), (700, "STOP"))
        for count, (index, body) in enumerate(replies, start=1):
            answer = await tracker.post_inbound(client, a, sender=phone(index), body=body)
            assert answer.status_code == 200
            assert await eventually(lambda count=count: _stored(pool, a, count))  # type: ignore[misc]

    # Then A reads all four, in pages, each attributed to the last message its number got
    # within 24 hours: number 1's to the second campaign, number 2's to nothing
    async with httpx.AsyncClient(base_url=tracker.url, timeout=10, headers=a.headers) as api:
        every = await _all_pages(api, "/v1/replies", limit=3)
        of_first = (await api.get(f"/v1/campaigns/{first}/replies")).json()["items"]
        of_second = (await api.get(f"/v1/campaigns/{second}/replies")).json()["items"]
        of_recipient = (
            await api.get(f"/v1/campaigns/{first}/recipients/{first_recipients[0].id}/replies")
        ).json()["items"]
        of_number = (await api.get("/v1/replies", params={"phone": "(415) 300-0701"})).json()["items"]
        progress = (await api.get(f"/v1/campaigns/{first}/progress")).json()
        exported = (await api.get(f"/v1/campaigns/{first}/recipients.csv")).text
        logs = (await api.get(f"/v1/campaigns/{first}/recipients")).json()["items"]
    assert [(r["phone"], r["body"], r["campaign_id"]) for r in every] == [
        (phone(700), "Yes please", str(first)),
        (phone(701), "What time?", str(second)),
        (phone(702), "Who is this?", None),
        (phone(700), "STOP", str(first)),
    ]
    assert every[3]["action"] == "opt_out" and every[0]["action"] is None
    assert [r["body"] for r in of_first] == ["Yes please", "STOP"]
    assert {r["recipient_id"] for r in of_first} == {first_recipients[0].id}
    assert [(r["body"], r["recipient_id"]) for r in of_second] == [("What time?", second_recipients[0].id)]
    assert [r["body"] for r in of_recipient] == ["Yes please", "STOP"]
    assert [r["body"] for r in of_number] == ["What time?"]

    # And the first campaign's progress, logs and CSV count them per recipient
    assert (progress["replies"], progress["replied"]) == (2, 1)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {row["phone"]: row["replies"] for row in rows} == {
        phone(700): "2",
        phone(701): "0",
        phone(702): "0",
    }
    assert {item["phone"]: item["replies"] for item in logs} == {phone(700): 2, phone(701): 0, phone(702): 0}

    # And STOP still suppressed the number at A only
    # (of these two tenants: other tests of the session use the same numbers)
    suppressed = await pool.fetch(
        "SELECT tenant_id FROM suppressions WHERE phone_e164 = $1 AND tenant_id = ANY($2::uuid[])",
        phone(700),
        [a.id, b.id],
    )
    assert [row["tenant_id"] for row in suppressed] == [a.id]

    # And B sees none of A's replies: its own list is empty, A's campaign and recipient are 404
    async with httpx.AsyncClient(base_url=tracker.url, timeout=10, headers=b.headers) as api:
        b_all = (await api.get("/v1/replies")).json()
        b_own = (await api.get(f"/v1/campaigns/{other}/replies")).json()
        b_first = await api.get(f"/v1/campaigns/{first}/replies")
        b_recipient = await api.get(f"/v1/campaigns/{first}/recipients/{first_recipients[0].id}/replies")
        b_cross = await api.get(f"/v1/campaigns/{other}/recipients/{first_recipients[0].id}/replies")
    assert b_all == {"items": [], "next_after": None}
    assert b_own == {"items": [], "next_after": None}
    assert (b_first.status_code, b_recipient.status_code, b_cross.status_code) == (404, 404, 404)


async def test_a_reply_before_any_message_or_from_an_invalid_sender_belongs_to_no_campaign(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a tenant whose campaign message to number 0 is sent only after the reply
    tenant = await seed_tenant(pool)
    campaign, _ = await _sent(pool, tenant, hours_ago=[-1], start=720)

    # When number 0 writes first, and a sender that is no valid number writes too
    async with httpx.AsyncClient(timeout=10) as client:
        await tracker.post_inbound(client, tenant, sender=phone(720), body="Hello?")
        assert await eventually(lambda: _stored(pool, tenant, 1))
        await tracker.post_inbound(client, tenant, sender="not-a-number", body="hi")
        assert await eventually(lambda: _stored(pool, tenant, 2))

    # Then both are listed for the tenant and neither for the campaign
    async with httpx.AsyncClient(base_url=tracker.url, timeout=10, headers=tenant.headers) as api:
        every = (await api.get("/v1/replies")).json()["items"]
        of_campaign = (await api.get(f"/v1/campaigns/{campaign}/replies")).json()["items"]
        bad_phone = await api.get("/v1/replies", params={"phone": "call me"})
    assert [(r["body"], r["campaign_id"]) for r in every] == [("Hello?", None), ("hi", None)]
    assert of_campaign == []
    assert bad_phone.status_code == 422
