"""The segmenter's hold for the sending window on the real database and broker, across both
daylight-saving changes, with the clock moved through its offset file: a running campaign holds
at the window's end until the next local opening (an hour less or more away on those nights) and
is released at it, each announced once even with two segmenters making the same pass."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage
from audience_data import Dataset, seed
from segmenters import segmenter

from services.segmenter.audience.model import Audience
from services.segmenter.clockwork import hold_for_windows
from shared import topology
from shared.broker import Publisher
from shared.clock import set_offset
from tests.support import IsolatedEnvironment

NEW_YORK = ZoneInfo("America/New_York")
EVERY_DAY_9_TO_20 = {
    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    "start": "09:00",
    "end": "20:00",
    "recipient_timezone": False,
}


@pytest.fixture
def clock_file(tmp_path: Path) -> Path:
    path = tmp_path / "clock-offset"
    set_offset(path, 0.0)
    return path


@pytest.fixture
async def hold_events(broker: Publisher) -> AsyncIterator[list[dict[str, object]]]:
    queue = await broker.channel.declare_queue(exclusive=True)
    for key in ("campaign.held", "campaign.released"):
        await queue.bind(topology.EVENTS_EXCHANGE, routing_key=key)
    seen: list[dict[str, object]] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        seen.append(orjson.loads(message.body))

    tag = await queue.consume(on_message, no_ack=True)
    try:
        yield seen
    finally:
        await queue.cancel(tag)


async def running_campaign(pool: asyncpg.Pool, broker: Publisher) -> tuple[UUID, UUID]:
    tenant_id = await seed(pool, Dataset(customers={"c": "+14155550077"}))
    await topology.declare_tenant(broker.channel, str(tenant_id))
    await pool.execute("UPDATE tenants SET sending_window = $2 WHERE id = $1", tenant_id, EVERY_DAY_9_TO_20)
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template, state, started_at,"
        " snapshot_completed_at) VALUES ($1, $2, 'c', $3, '{}', 'running', now(), now())",
        campaign_id,
        tenant_id,
        Audience(segment="all_customers").model_dump(mode="json"),
    )
    return tenant_id, campaign_id


def move_clock_to(clock_file: Path, local: datetime) -> None:
    set_offset(clock_file, local.replace(tzinfo=NEW_YORK).timestamp() - time.time())


@pytest.mark.parametrize(
    ("evening", "opening_utc"),
    [
        # Spring forward: Saturday 20:00 EST, Sunday 09:00 EDT (UTC-4) — 12 hours closed
        (datetime(2026, 3, 7, 20, 0, 1), datetime(2026, 3, 8, 13, tzinfo=UTC)),
        # Fall back: Saturday 20:00 EDT, Sunday 09:00 EST (UTC-5) — 14 hours closed
        (datetime(2026, 10, 31, 20, 0, 1), datetime(2026, 11, 1, 14, tzinfo=UTC)),
    ],
    ids=["spring forward", "fall back"],
)
async def test_a_campaign_holds_until_the_local_opening_across_a_daylight_saving_change(
    pool: asyncpg.Pool,
    broker: Publisher,
    isolated_env: IsolatedEnvironment,
    clock_file: Path,
    hold_events: list[dict[str, object]],
    evening: datetime,
    opening_utc: datetime,
) -> None:
    # Given a running campaign of a tenant sending every day 09:00-20:00 in New York
    tenant_id, campaign_id = await running_campaign(pool, broker)
    one, two = await segmenter(isolated_env, clock_file), await segmenter(isolated_env, clock_file)
    try:
        # When the window's end passes on the night of a change and two segmenters make the pass
        move_clock_to(clock_file, evening)
        await asyncio.sleep(0.3)
        await asyncio.gather(
            hold_for_windows(one.pool, one.lifecycle), hold_for_windows(two.pool, two.lifecycle)
        )
        # Then the campaign holds, still running, until 09:00 local the next morning
        row = await pool.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
        assert (row["state"], row["hold_reason"]) == ("running", "sending_window")
        assert row["hold_until"] == opening_utc
        # When it is a second before the opening, nothing changes
        set_offset(clock_file, opening_utc.timestamp() - 1 - time.time())
        await asyncio.sleep(0.3)
        await hold_for_windows(one.pool, one.lifecycle)
        assert await pool.fetchval("SELECT hold_reason FROM campaigns WHERE id = $1", campaign_id)
        # When the opening passes
        set_offset(clock_file, opening_utc.timestamp() + 1 - time.time())
        await asyncio.sleep(0.3)
        await asyncio.gather(
            hold_for_windows(one.pool, one.lifecycle), hold_for_windows(two.pool, two.lifecycle)
        )
        # Then the hold is released, and each change was announced once
        row = await pool.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
        assert (row["state"], row["hold_reason"], row["hold_until"]) == ("running", None, None)
        await asyncio.sleep(0.5)
        mine = [event for event in hold_events if event["campaign_id"] == str(campaign_id)]
        assert [event["event"] for event in mine] == ["held", "released"]
        assert mine[0]["reason"] == "sending_window"
        assert datetime.fromisoformat(str(mine[0]["until"])) == opening_utc
        assert str(tenant_id) == mine[0]["tenant_id"]
    finally:
        await one.close()
        await two.close()
