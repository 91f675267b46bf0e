"""Scheduled campaigns on the real database and broker: the schedule lives in PostgreSQL (a
segmenter that scheduled it may be gone when the time comes), two segmenters polling at once start
a due campaign exactly once, the audience is the one at the start (not at scheduling), and a
schedule can be moved or cancelled until then. The time is moved with the clock's offset file."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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
from services.segmenter.campaigns import InvalidTransition
from shared import topology
from shared.broker import Publisher
from shared.clock import set_offset
from shared.http import InputError
from tests.support import IsolatedEnvironment

NEW_YORK = ZoneInfo("America/New_York")


def mine(started: list[asyncpg.Record], tenant_id: UUID) -> list[UUID]:
    """The campaigns of this test's tenant among those a pass started: the pass is cross-tenant,
    and the session's database holds other tests' scheduled campaigns, which the test's clock,
    moved days ahead, makes due too."""
    return [row["id"] for row in started if row["tenant_id"] == tenant_id]


@pytest.fixture
def clock_file(tmp_path: Path) -> Path:
    path = tmp_path / "clock-offset"
    set_offset(path, 0.0)
    return path


@pytest.fixture
async def started_events(broker: Publisher) -> AsyncIterator[list[dict[str, object]]]:
    """Every ``campaign.started`` lifecycle event published while the test runs."""
    queue = await broker.channel.declare_queue(exclusive=True)
    await queue.bind(topology.EVENTS_EXCHANGE, routing_key="campaign.started")
    seen: list[dict[str, object]] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        seen.append(orjson.loads(message.body))

    tag = await queue.consume(on_message, no_ack=True)
    try:
        yield seen
    finally:
        await queue.cancel(tag)


async def draft(pool: asyncpg.Pool, tenant_id: UUID) -> UUID:
    campaign_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template) VALUES ($1, $2, 'later', $3, $4)",
        campaign_id,
        tenant_id,
        Audience(segment="all_customers").model_dump(mode="json"),
        {"body": "Hello {customer_first_name}"},
    )
    return campaign_id


async def add_customer(pool: asyncpg.Pool, tenant_id: UUID, phone: str) -> None:
    await pool.execute(
        "INSERT INTO customers (tenant_id, external_id, first_name, phone_e164) VALUES ($1, $2, 'Late', $2)",
        tenant_id,
        phone,
    )


async def wait_for_snapshot(pool: asyncpg.Pool, campaign_id: UUID) -> asyncpg.Record:
    for _ in range(200):
        row = await pool.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
        if row["snapshot_completed_at"] is not None:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError("the snapshot did not complete")


def local_time_in(hours: float) -> datetime:
    """A New York wall-clock time (naive) this many hours from now, whole minutes."""
    at = (datetime.now(UTC) + timedelta(hours=hours)).astimezone(NEW_YORK).replace(tzinfo=None)
    return at.replace(second=0, microsecond=0)


async def test_two_segmenters_start_a_due_campaign_exactly_once_with_the_audience_of_its_start(
    pool: asyncpg.Pool,
    broker: Publisher,
    isolated_env: IsolatedEnvironment,
    clock_file: Path,
    started_events: list[dict[str, object]],
) -> None:
    # Given a tenant with three customers and twenty campaigns scheduled in an hour, local time,
    # by a segmenter that is gone by the time they are due (the schedule is only in PostgreSQL)
    tenant_id = await seed(pool, Dataset(customers={f"c{n}": f"+1415555{n:04d}" for n in range(3)}))
    await topology.declare_tenant(broker.channel, str(tenant_id))
    scheduler = await segmenter(isolated_env, clock_file)
    campaign_ids = [await draft(pool, tenant_id) for _ in range(20)]
    at = local_time_in(1)
    for campaign_id in campaign_ids:
        row = await scheduler.lifecycle.schedule(tenant_id, campaign_id, at=at, timezone=None)
        assert row["state"] == "scheduled"
        assert row["scheduled_at"] == at.replace(tzinfo=NEW_YORK).astimezone(UTC)
        assert row["schedule_timezone"] == "America/New_York"
    await scheduler.close()
    # And a fourth customer who arrives after the scheduling
    await add_customer(pool, tenant_id, "+14155559999")
    one, two = await segmenter(isolated_env, clock_file), await segmenter(isolated_env, clock_file)
    try:
        # When nothing is due yet, neither starts anything
        assert mine(await one.lifecycle.start_due(), tenant_id) == []
        assert mine(await two.lifecycle.start_due(), tenant_id) == []
        # When the clock passes the time and both poll at once, again and again
        set_offset(clock_file, 3700.0)
        await asyncio.sleep(0.3)
        rounds = await asyncio.gather(
            *(instance.lifecycle.start_due(limit=3) for _ in range(10) for instance in (one, two))
        )
        # Then every campaign was started by exactly one of them, and announced once
        started = [campaign_id for batch in rounds for campaign_id in mine(batch, tenant_id)]
        assert sorted(started) == sorted(campaign_ids)
        await asyncio.sleep(0.5)
        announced = [event["campaign_id"] for event in started_events]
        assert sorted(announced) == sorted(str(c) for c in campaign_ids)
        # And each snapshot holds the audience at the start: the late customer included
        for campaign_id in campaign_ids:
            row = await wait_for_snapshot(pool, campaign_id)
            assert row["state"] == "running" and row["total"] == 4
            assert row["started_at"] >= at.replace(tzinfo=NEW_YORK)
        # And polling again starts nothing twice
        assert mine(await one.lifecycle.start_due(), tenant_id) == []
        assert mine(await two.lifecycle.start_due(), tenant_id) == []
    finally:
        await one.close()
        await two.close()


async def test_a_schedule_in_the_past_in_an_unknown_zone_or_at_a_skipped_time_is_refused_naming_the_field(
    pool: asyncpg.Pool, isolated_env: IsolatedEnvironment, clock_file: Path
) -> None:
    # Given a draft of a New York tenant
    tenant_id = await seed(pool, Dataset(customers={"c": "+14155550001"}))
    campaign_id = await draft(pool, tenant_id)
    instance = await segmenter(isolated_env, clock_file)
    try:
        cases = [
            (local_time_in(-1), None, "schedule.at", "in the past"),
            (local_time_in(2), "Mars/Olympus_Mons", "schedule.timezone", "unknown time zone"),
            (datetime(2027, 3, 14, 2, 30), "America/New_York", "schedule.at", "does not exist"),
        ]
        for at, zone, field, words in cases:
            # When it is scheduled so
            with pytest.raises(InputError) as refused:
                await instance.lifecycle.schedule(tenant_id, campaign_id, at=at, timezone=zone)
            # Then the error names the field and says why
            [error] = refused.value.errors
            assert error["field"] == field and words in error["message"]
        # And nothing changed
        row = await pool.fetchrow("SELECT state, scheduled_at FROM campaigns WHERE id = $1", campaign_id)
        assert (row["state"], row["scheduled_at"]) == ("draft", None)
    finally:
        await instance.close()


async def test_a_scheduled_campaign_is_rescheduled_cancelled_or_started_now_until_it_starts_and_not_after(
    pool: asyncpg.Pool, broker: Publisher, isolated_env: IsolatedEnvironment, clock_file: Path
) -> None:
    # Given three campaigns scheduled for tomorrow, given in Paris time
    tenant_id = await seed(pool, Dataset(customers={"c": "+14155550002"}))
    await topology.declare_tenant(broker.channel, str(tenant_id))
    moved, cancelled, now = [await draft(pool, tenant_id) for _ in range(3)]
    instance = await segmenter(isolated_env, clock_file)
    try:
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        for campaign_id in (moved, cancelled, now):
            await instance.lifecycle.schedule(tenant_id, campaign_id, at=tomorrow, timezone="Europe/Paris")
        # When one is moved to the day after, one cancelled and one started at once
        later = await instance.lifecycle.schedule(
            tenant_id, moved, at=tomorrow + timedelta(days=1), timezone="Europe/Paris"
        )
        gone = await instance.lifecycle.cancel(tenant_id, cancelled)
        early = await instance.lifecycle.start(tenant_id, now)
        # Then the first waits for its new time, the second is cancelled, the third runs
        assert later["state"] == "scheduled" and later["scheduled_at"] == tomorrow + timedelta(days=1)
        assert gone["state"] == "cancelled"
        assert early["state"] == "running"
        # And at the first time nothing starts (again); at the new one only the moved campaign
        set_offset(clock_file, 86_400 + 60)
        await asyncio.sleep(0.3)
        assert mine(await instance.lifecycle.start_due(), tenant_id) == []
        set_offset(clock_file, 2 * 86_400 + 60)
        await asyncio.sleep(0.3)
        assert mine(await instance.lifecycle.start_due(), tenant_id) == [moved]
        # And once started it can no longer be rescheduled
        with pytest.raises(InvalidTransition):
            await instance.lifecycle.schedule(
                tenant_id, moved, at=tomorrow + timedelta(days=5), timezone=None
            )
        await wait_for_snapshot(pool, moved)
    finally:
        await instance.close()
