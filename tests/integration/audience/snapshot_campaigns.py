"""A running campaign to snapshot and what its snapshot published: the snapshot tests' set-up."""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import orjson
from audience_data import Dataset, seed

from services.segmenter.audience.model import Audience
from shared import topology
from shared.broker import Publisher
from tests.support import drain_queue

NOW = datetime(2026, 3, 20, 12, tzinfo=ZoneInfo("America/New_York"))


async def running_campaign(
    pool: asyncpg.Pool, broker: Publisher, customers: dict[str, str | None]
) -> tuple[UUID, UUID]:
    """A fresh tenant with ``customers``, its dispatch queue, and a running all-customers campaign."""
    tenant_id = await seed(pool, Dataset(customers=customers))
    await topology.declare_tenant(broker.channel, str(tenant_id))
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template, state, started_at)"
        " VALUES ($1, $2, 'c', $3, '{}', 'running', $4)",
        campaign_id,
        tenant_id,
        Audience(segment="all_customers").model_dump(mode="json"),
        NOW,
    )
    return tenant_id, campaign_id


async def published_ids(broker: Publisher, tenant_id: UUID) -> list[int]:
    """The recipient ids of every batch in the tenant's dispatch queue (taken out of it)."""
    ids: list[int] = []
    for message in await drain_queue(broker.channel, topology.dispatch_queue_name(str(tenant_id))):
        ids.extend(orjson.loads(message.body)["recipient_ids"])
    return ids
