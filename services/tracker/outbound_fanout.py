"""Where outbound webhook deliveries come from, off the send path: campaign lifecycle events are
consumed from the broker (their own queue), recipient status events are read from the message
event log that senders and the tracker already write in the transactions that change a
recipient. Nothing is added to sending: a tenant's endpoints cost its senders nothing.

An event becomes one delivery per enabled endpoint of its tenant subscribed to its type, inserted
once (a redelivered message or a re-read event finds its delivery there).
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from services.tracker import outbound_queries as queries
from services.tracker.outbound_policy import Gap, advance_feed
from shared.broker import Publisher, consume
from shared.db import OneTenant, all_tenants_transaction, tenant_transaction
from shared.events import CampaignLifecycle
from shared.outbound_events import RECIPIENT_EVENT_TYPES, RECIPIENT_STATES, envelope, recipient_event_type

FEED = "message_events"
FEED_BATCH = 2000
# Event ids of lifecycle events are derived from what identifies them, so a redelivered message
# (or the same event published twice) is recognised.
_LIFECYCLE_NAMESPACE = uuid.UUID("5a0f1c2e-7d43-4c55-9a57-0c1b3f7e2d10")


def lifecycle_event_id(event: CampaignLifecycle) -> str:
    key = f"{event.tenant_id}:{event.campaign_id}:{event.event}:{event.at.isoformat()}"
    return f"evt_{uuid.uuid5(_LIFECYCLE_NAMESPACE, key).hex}"


def status_event_id(message_event_id: int) -> str:
    return f"evt_me_{message_event_id}"


async def _insert(conn: asyncpg.Connection | asyncpg.Pool, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        columns = list(zip(*rows, strict=True))
        await conn.execute(queries.INSERT_DELIVERIES, *[list(column) for column in columns])


async def lifecycle_deliveries(pool: asyncpg.Pool, event: CampaignLifecycle) -> int:
    event_type = event.routing_key()
    tenant = OneTenant(pool)
    endpoints = await tenant.fetch(event.tenant_id, queries.SELECT_SUBSCRIBED, event.tenant_id, event_type)
    if not endpoints:
        return 0
    name = await tenant.fetchval(
        event.tenant_id, queries.SELECT_CAMPAIGN_NAME, event.tenant_id, event.campaign_id
    )
    event_id = lifecycle_event_id(event)
    body = envelope(
        event_id=event_id,
        event_type=event_type,
        created_at=event.at,
        tenant_id=event.tenant_id,
        data={
            "campaign_id": event.campaign_id,
            "campaign_name": name,
            "state": event.state,
            "reason": event.reason,
            "until": event.until,
            "at": event.at,
        },
    ).decode()
    async with tenant_transaction(pool, event.tenant_id) as conn:
        await _insert(conn, [(event.tenant_id, row["id"], event_id, event_type, body) for row in endpoints])
    return len(endpoints)


async def start_lifecycle_consumer(queue: AbstractQueue, pool: asyncpg.Pool, publisher: Publisher) -> str:
    async def handle(event: CampaignLifecycle, message: AbstractIncomingMessage) -> None:
        await lifecycle_deliveries(pool, event)

    return await consume(queue, CampaignLifecycle, handle, publisher)


def _status_body(event: asyncpg.Record, details: asyncpg.Record | None) -> tuple[str, str, str]:
    event_id = status_event_id(event["id"])
    event_type = recipient_event_type(event["to_state"])
    body = envelope(
        event_id=event_id,
        event_type=event_type,
        created_at=event["at"],
        tenant_id=event["tenant_id"],
        data={
            "campaign_id": event["campaign_id"],
            "recipient_id": event["recipient_id"],
            "phone": details["phone_e164"] if details else None,
            "customer_external_id": details["customer_external_id"] if details else None,
            "twilio_sid": details["twilio_sid"] if details else None,
            "status": event["to_state"],
            "previous_status": event["from_state"],
            "error_code": event["error_code"],
            "at": event["at"],
        },
    ).decode()
    return event_id, event_type, body


async def feed_once(pool: asyncpg.Pool, *, settle_s: float, batch: int = FEED_BATCH) -> int:
    """Read the message events written since the last pass into deliveries; the number read
    (0 when another tracker holds the feed, or nothing is new). The feed reads every tenant's
    events: a cross-tenant transaction."""
    async with all_tenants_transaction(pool) as conn:
        feed = await conn.fetchrow(queries.LOCK_FEED, FEED)
        if feed is None:
            return 0
        position: int = feed["position"]
        gaps: list[Gap] = [(int(low), int(high), float(seen)) for low, high, seen in feed["gaps"]]
        subscribed = await conn.fetch(queries.SELECT_RECIPIENT_SUBSCRIPTIONS, list(RECIPIENT_EVENT_TYPES))
        if not subscribed:
            # Nobody listens: skip to the end, nothing to look for in the gaps either.
            latest = await conn.fetchval(queries.LATEST_EVENT_ID)
            if latest != position or gaps:
                await conn.execute(queries.UPDATE_FEED, FEED, max(latest, position), [])
            return 0
        new = await conn.fetch(queries.SELECT_EVENTS_AFTER, position, batch)
        in_gaps = (
            await conn.fetch(queries.SELECT_EVENTS_IN_GAPS, [g[0] for g in gaps], [g[1] for g in gaps])
            if gaps
            else []
        )
        endpoints: dict[tuple[Any, str], list[Any]] = defaultdict(list)
        for row in subscribed:
            for event_type in row["event_types"]:
                endpoints[(row["tenant_id"], event_type)].append(row["id"])
        wanted = [
            event
            for event in (*in_gaps, *new)
            if event["to_state"] in RECIPIENT_STATES
            and (event["tenant_id"], recipient_event_type(event["to_state"])) in endpoints
        ]
        if wanted:
            details = {
                row["id"]: row
                for row in await conn.fetch(
                    queries.SELECT_RECIPIENT_DETAILS,
                    list({event["recipient_id"] for event in wanted}),
                    list({event["tenant_id"] for event in wanted}),
                )
            }
            rows = []
            for event in wanted:
                event_id, event_type, body = _status_body(event, details.get(event["recipient_id"]))
                for endpoint_id in endpoints[(event["tenant_id"], event_type)]:
                    rows.append((event["tenant_id"], endpoint_id, event_id, event_type, body))
            await _insert(conn, rows)
        position, gaps = advance_feed(
            position,
            gaps,
            new_ids=[event["id"] for event in new],
            found_in_gaps=[event["id"] for event in in_gaps],
            now=time.time(),
            settle_s=settle_s,
        )
        await conn.execute(queries.UPDATE_FEED, FEED, position, [list(gap) for gap in gaps])
        return len(new) + len(in_gaps)
