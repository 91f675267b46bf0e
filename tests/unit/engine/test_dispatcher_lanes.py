"""The dispatcher's lanes without a broker: slots and chunking at a rate, rate changes, pauses,
and the in-flight bound of unlimited tenants (publishing is captured, time is real)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import pytest

from services.dispatcher.scheduler import Dispatcher, DispatchSettings
from shared.events import ChunkDone, RecipientBatch, SendChunk
from shared.throttle import slot_interval

LEAD = 0.05


class Campaigns:
    def __init__(self) -> None:
        self.running_ids: set[uuid.UUID] = set()

    async def running(self, campaign_id: uuid.UUID) -> bool:
        return campaign_id in self.running_ids

    def is_running(self, campaign_id: uuid.UUID) -> bool:
        return campaign_id in self.running_ids


class Captured:
    def __init__(self) -> None:
        self.chunks: list[tuple[float, SendChunk, dict[str, Any] | None]] = []
        self._published = asyncio.Condition()

    async def __call__(self, chunk: SendChunk, headers: dict[str, Any] | None) -> None:
        async with self._published:
            self.chunks.append((time.time(), chunk, headers))
            self._published.notify_all()

    async def wait_for(self, count: int) -> None:
        async with self._published:
            await self._published.wait_for(lambda: len(self.chunks) >= count)

    def slots(self) -> list[float]:
        """Every slot of every chunk published, in order."""
        return sorted(
            c.first_slot_at + i * c.interval_s  # type: ignore[operator]
            for _, c, _ in self.chunks
            for i in range(len(c.recipient_ids))
        )


def make(chunk_size: int = 20, inflight: int = 2) -> tuple[Dispatcher, Campaigns, Captured]:
    campaigns, captured = Campaigns(), Captured()
    settings = DispatchSettings(
        chunk_size=chunk_size,
        unlimited_chunk_size=chunk_size,
        margin=0.015,
        lead_s=LEAD,
        unlimited_inflight_chunks=inflight,
        feedback_timeout_s=30,
        reply_queue="replies",
    )
    return Dispatcher(settings, campaigns, captured), campaigns, captured


def batch(tenant: uuid.UUID, campaign: uuid.UUID, count: int) -> RecipientBatch:
    return RecipientBatch(tenant_id=tenant, campaign_id=campaign, recipient_ids=list(range(1, count + 1)))


async def mid_batch(
    count: int,
) -> tuple[Dispatcher, Captured, uuid.UUID, uuid.UUID, asyncio.Task[int]]:
    """A tenant at 80/s whose running campaign's batch of ``count`` is being dispatched, two
    chunks out already (the lane holds its lock meanwhile); the caller cancels ``task``."""
    dispatcher, campaigns, captured = make()
    tenant, campaign = uuid.uuid4(), uuid.uuid4()
    campaigns.running_ids.add(campaign)
    dispatcher.set_rate(tenant, 80)
    task = asyncio.create_task(dispatcher.dispatch(batch(tenant, campaign, count)))
    await captured.wait_for(2)
    return dispatcher, captured, tenant, campaign, task


async def test_a_rate_limited_batch_becomes_chunks_with_evenly_spaced_slots() -> None:
    # Given a tenant at 80/s and a running campaign
    dispatcher, campaigns, captured = make()
    tenant, campaign = uuid.uuid4(), uuid.uuid4()
    campaigns.running_ids.add(campaign)
    dispatcher.set_rate(tenant, 80)
    # When a batch of 60 is dispatched
    assert await dispatcher.dispatch(batch(tenant, campaign, 60)) == 60
    # Then it leaves as chunks of 20 whose slots continue one another at the slot interval
    interval = slot_interval(80, 0.015)
    chunks = [chunk for _, chunk, _ in captured.chunks]
    assert [len(c.recipient_ids) for c in chunks] == [20, 20, 20]
    for previous, current in itertools.pairwise(chunks):
        assert current.first_slot_at == pytest.approx(previous.first_slot_at + 20 * interval)  # type: ignore[operator]
    # And no chunk was handed out more than the lead ahead of its first slot
    for published_at, chunk, headers in captured.chunks:
        assert chunk.first_slot_at - published_at <= LEAD + 0.3  # type: ignore[operator]
        # And the sender knows where to hand back what it comes too late for
        assert headers is not None and headers[ChunkDone.REPLY_HEADER] == "replies"
        # And, the slots bounding the tenant's chunks in flight, asks for no acknowledgement
        assert ChunkDone.CHUNK_HEADER not in headers


async def test_late_recipients_get_the_next_free_slots_at_once_ahead_of_the_queue() -> None:
    # Given a tenant at 80/s in the middle of a big batch (the lane holds its lock meanwhile)
    dispatcher, captured, tenant, campaign, task = await mid_batch(200)

    # When a sender hands back 25 recipients it came too late for
    handed_back_at = time.time()
    assert await dispatcher.reslot(tenant, campaign, list(range(1001, 1026))) == 25
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    # Then they leave within a chunk or two (not behind the rest of the batch), in chunks whose
    # slots start half a lead from now at the earliest and never come closer than the interval to
    # any other slot of the tenant
    interval = slot_interval(80, 0.015)
    late = [(at, c) for at, c, _ in captured.chunks if c.recipient_ids[0] > 1000]
    assert sum(len(c.recipient_ids) for _, c in late) == 25
    assert all(at - handed_back_at < LEAD + 0.6 for at, _ in late)
    assert late[0][1].first_slot_at >= handed_back_at + LEAD / 2  # type: ignore[operator]
    slots = captured.slots()
    assert all(b - a >= interval - 1e-6 for a, b in itertools.pairwise(slots))


async def test_late_recipients_handed_back_at_once_get_slots_at_most_a_lead_and_a_chunk_ahead() -> None:
    # Given a tenant at 80/s in the middle of a big batch
    dispatcher, captured, tenant, campaign, task = await mid_batch(200)

    # When four senders hand back 25 recipients each at the same moment
    handed_back = [list(range(1001 + 100 * k, 1026 + 100 * k)) for k in range(4)]
    counts = await asyncio.gather(*(dispatcher.reslot(tenant, campaign, ids) for ids in handed_back))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    # Then all are slotted, and no chunk, late or not, was handed out more than a lead and a chunk
    # ahead of its first slot (a dispatcher taking over the tenant relies on it), nor closer than
    # the interval to any other slot of the tenant
    assert counts == [25, 25, 25, 25]
    for published_at, chunk, _ in captured.chunks:
        assert chunk.first_slot_at - published_at <= LEAD + 0.3  # type: ignore[operator]
    interval = slot_interval(80, 0.015)
    slots = captured.slots()
    assert all(b - a >= interval - 1e-6 for a, b in itertools.pairwise(slots))


async def test_a_re_slot_right_after_the_lead_stretched_leaves_no_gap_in_the_tenants_slots() -> None:
    # Given a tenant at 80/s in the middle of a big batch
    dispatcher, captured, tenant, campaign, task = await mid_batch(400)

    # When a sender reports a chunk that reached it 0.3 s after its first slot (the lead stretches
    # to 0.5 s), and hands back the messages it came too late for
    dispatcher.timing.observe(time.time(), arrived_late_s=0.3, woke_late_s=0.0)
    assert dispatcher.timing.lead_s(time.time()) > 0.5
    handed_back_at = time.time()
    assert await dispatcher.reslot(tenant, campaign, list(range(1001, 1006))) == 5
    await captured.wait_for(len(captured.chunks) + 2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    # Then they take the tenant's next slots, half a configured lead from the hand-back at the
    # earliest, and no slot is left unused between the chunks before them and those after
    interval = slot_interval(80, 0.015)
    late = [c for _, c, _ in captured.chunks if c.recipient_ids[0] > 1000]
    assert late[0].first_slot_at >= handed_back_at + LEAD / 2  # type: ignore[operator]
    slots = captured.slots()
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= interval - 1e-6
    assert max(gaps) < interval + LEAD


async def test_late_recipients_of_a_campaign_no_longer_running_are_not_slotted() -> None:
    dispatcher, _, captured = make()
    tenant, campaign = uuid.uuid4(), uuid.uuid4()
    dispatcher.set_rate(tenant, 80)
    assert await dispatcher.reslot(tenant, campaign, [1, 2, 3]) == 0
    assert captured.chunks == []


async def test_a_rate_change_applies_to_the_next_chunk() -> None:
    dispatcher, campaigns, captured = make()
    tenant, campaign = uuid.uuid4(), uuid.uuid4()
    campaigns.running_ids.add(campaign)
    dispatcher.set_rate(tenant, 80)
    # Given a dispatch in progress / When the rate drops to 40 meanwhile
    task = asyncio.create_task(dispatcher.dispatch(batch(tenant, campaign, 60)))
    await captured.wait_for(1)
    dispatcher.set_rate(tenant, 40)
    await task
    # Then later chunks use the new interval
    assert captured.chunks[-1][1].interval_s == pytest.approx(slot_interval(40, 0.015))


async def test_a_campaign_paused_mid_batch_stops_getting_slots() -> None:
    dispatcher, campaigns, captured = make()
    tenant, campaign = uuid.uuid4(), uuid.uuid4()
    campaigns.running_ids.add(campaign)
    dispatcher.set_rate(tenant, 80)
    task = asyncio.create_task(dispatcher.dispatch(batch(tenant, campaign, 200)))
    await captured.wait_for(2)
    # When the campaign is paused / Then the rest of the batch is dropped
    campaigns.running_ids.discard(campaign)
    dispatched = await task
    assert dispatched < 200
    assert sum(len(c.recipient_ids) for _, c, _ in captured.chunks) == dispatched


async def test_a_batch_of_a_campaign_that_is_not_running_is_dropped() -> None:
    dispatcher, _, captured = make()
    assert await dispatcher.dispatch(batch(uuid.uuid4(), uuid.uuid4(), 10)) == 0
    assert captured.chunks == []


async def test_an_unlimited_tenant_waits_for_acknowledgements_beyond_its_in_flight_bound() -> None:
    # Given an unlimited tenant allowed 2 chunks in flight
    dispatcher, campaigns, captured = make(chunk_size=10, inflight=2)
    tenant, campaign = uuid.uuid4(), uuid.uuid4()
    campaigns.running_ids.add(campaign)
    dispatcher.set_rate(tenant, None)
    # When a batch of 3 chunks is dispatched
    task = asyncio.create_task(dispatcher.dispatch(batch(tenant, campaign, 30)))
    await asyncio.sleep(0.1)
    # Then only 2 go out, unslotted and asking for an acknowledgement
    assert len(captured.chunks) == 2
    _, chunk, headers = captured.chunks[0]
    assert chunk.first_slot_at is None
    assert headers is not None and headers[ChunkDone.REPLY_HEADER] == "replies"
    # And the third goes when a sender acknowledges one
    dispatcher.chunk_done(tenant, headers[ChunkDone.CHUNK_HEADER])
    assert await asyncio.wait_for(task, 2) == 30
    assert len(captured.chunks) == 3


async def test_after_a_reconnect_slots_start_beyond_a_predecessors_horizon() -> None:
    dispatcher, campaigns, captured = make()
    tenant, campaign = uuid.uuid4(), uuid.uuid4()
    campaigns.running_ids.add(campaign)
    dispatcher.set_rate(tenant, 80)
    await dispatcher.dispatch(batch(tenant, campaign, 1))
    # When the connection was restored / Then the next slot is at least a lead and a chunk away
    dispatcher.restart_clocks()
    before = time.time()
    await dispatcher.dispatch(batch(tenant, campaign, 1))
    assert captured.chunks[-1][1].first_slot_at >= before + LEAD + 0.25  # type: ignore[operator]


async def test_only_a_dispatcher_that_has_dispatched_the_tenant_since_it_connected_owns_its_slots() -> None:
    dispatcher, campaigns, _ = make()
    tenant, campaign = uuid.uuid4(), uuid.uuid4()
    campaigns.running_ids.add(campaign)
    dispatcher.set_rate(tenant, 80)
    assert not dispatcher.owns_slots(tenant)
    await dispatcher.dispatch(batch(tenant, campaign, 1))
    assert dispatcher.owns_slots(tenant)
    # After a reconnect another dispatcher may have become the tenant's active consumer
    dispatcher.restart_clocks()
    assert not dispatcher.owns_slots(tenant)
