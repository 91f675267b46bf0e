"""The feed that turns message events into outbound webhook deliveries, on the real database:
only subscribed tenants and types, once per event, and ids that become visible late."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from services.tracker.outbound_fanout import FEED, feed_once
from shared.crypto import SecretBox
from shared.settings import DEVELOPMENT_ENCRYPTION_KEY
from tests.integration.tracker.helpers import (
    forget_seeded_tenants,
    seed_campaign,
    seed_recipients,
    seed_tenant,
)


@pytest.fixture(autouse=True)
async def clean(pool: asyncpg.Pool) -> AsyncIterator[None]:
    await _catch_up(pool)
    yield
    await pool.execute("DELETE FROM webhook_endpoints")
    await forget_seeded_tenants(pool)


async def _catch_up(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "UPDATE webhook_feed SET position = (SELECT COALESCE(max(id), 0) FROM message_events), gaps = '[]'"
        " WHERE name = $1",
        FEED,
    )


async def _endpoint(pool: asyncpg.Pool, tenant_id: uuid.UUID, event_types: list[str]) -> uuid.UUID:
    endpoint_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret_enc)"
        " VALUES ($1, $2, $3, $4, $5)",
        endpoint_id,
        tenant_id,
        "http://127.0.0.1:9/hook",
        event_types,
        SecretBox([DEVELOPMENT_ENCRYPTION_KEY]).encrypt("whsec_x"),
    )
    return endpoint_id


async def _event(
    conn: asyncpg.Connection | asyncpg.Pool,
    tenant_id: uuid.UUID,
    campaign_id: uuid.UUID,
    recipient_id: int,
    to_state: str,
) -> int:
    event_id: int = await conn.fetchval(
        "INSERT INTO message_events (tenant_id, campaign_id, recipient_id, from_state, to_state, source)"
        " VALUES ($1, $2, $3, 'sending', $4, 'test') RETURNING id",
        tenant_id,
        campaign_id,
        recipient_id,
        to_state,
    )
    return event_id


async def _deliveries(pool: asyncpg.Pool, endpoint_id: uuid.UUID) -> list[dict[str, object]]:
    rows = await pool.fetch(
        "SELECT event_id, event_type, body FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id",
        endpoint_id,
    )
    return [{**dict(row), "body": orjson.loads(row["body"])} for row in rows]


async def test_status_events_become_deliveries_for_subscribed_endpoints_only(pool: asyncpg.Pool) -> None:
    # Given tenant A subscribed to recipient.delivered, and tenant B subscribed to nothing of the kind
    a, b = await seed_tenant(pool), await seed_tenant(pool)
    a_endpoint = await _endpoint(pool, a.id, ["recipient.delivered"])
    b_endpoint = await _endpoint(pool, b.id, ["campaign.started"])
    a_campaign, b_campaign = await seed_campaign(pool, a.id), await seed_campaign(pool, b.id)
    a_recipient = (await seed_recipients(pool, a.id, a_campaign, 1))[0]
    b_recipient = (await seed_recipients(pool, b.id, b_campaign, 1, start=50))[0]

    # When both tenants' recipients are sent and delivered, and the feed runs twice
    delivered = await _event(pool, a.id, a_campaign, a_recipient.id, "delivered")
    await _event(pool, a.id, a_campaign, a_recipient.id, "sent")
    await _event(pool, b.id, b_campaign, b_recipient.id, "delivered")
    await feed_once(pool, settle_s=60)
    await feed_once(pool, settle_s=60)

    # Then A's endpoint has one delivery, of its delivered event, with the recipient's details
    deliveries = await _deliveries(pool, a_endpoint)
    assert [d["event_type"] for d in deliveries] == ["recipient.delivered"]
    body = deliveries[0]["body"]
    assert isinstance(body, dict)
    assert body["id"] == f"evt_me_{delivered}" and body["tenant_id"] == str(a.id)
    assert body["data"]["phone"] == a_recipient.phone and body["data"]["twilio_sid"] == a_recipient.sid
    assert body["data"]["customer_external_id"] == f"{a_campaign}-0"
    # And B's endpoint none
    assert await _deliveries(pool, b_endpoint) == []


async def test_an_event_committed_after_a_later_one_is_still_delivered(pool: asyncpg.Pool) -> None:
    # Given a subscribed tenant, and a transaction that took an event id but has not committed
    tenant = await seed_tenant(pool)
    endpoint = await _endpoint(pool, tenant.id, ["recipient.sent"])
    campaign = await seed_campaign(pool, tenant.id)
    first, second = await seed_recipients(pool, tenant.id, campaign, 2)
    async with pool.acquire() as slow:
        transaction = slow.transaction()
        await transaction.start()
        late = await _event(slow, tenant.id, campaign, first.id, "sent")

        # When a later event commits and the feed reads past the open one
        early = await _event(pool, tenant.id, campaign, second.id, "sent")
        await feed_once(pool, settle_s=60)
        assert [d["body"]["id"] for d in await _deliveries(pool, endpoint)] == [f"evt_me_{early}"]  # type: ignore[index]

        # And the slow transaction commits
        await transaction.commit()
    await feed_once(pool, settle_s=60)

    # Then its event is delivered too, once
    await feed_once(pool, settle_s=60)
    ids = [d["body"]["id"] for d in await _deliveries(pool, endpoint)]  # type: ignore[index]
    assert sorted(ids) == sorted([f"evt_me_{early}", f"evt_me_{late}"])
    gaps = await pool.fetchval("SELECT gaps FROM webhook_feed WHERE name = $1", FEED)
    assert gaps == []
