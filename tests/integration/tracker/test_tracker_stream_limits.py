"""Bounded progress streams on a tracker with small caps: 429 past the caps, streams that end, and
one database poll per campaign and interval however many streams follow it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.tracker.helpers import (
    RunningTracker,
    SeededTenant,
    eventually,
    seed_campaign,
    seed_recipients,
    seed_tenant,
    start_tracker,
)
from tests.support import IsolatedEnvironment

PER_KEY = 3
TOTAL = 5
LIFETIME_S = 4.0


@pytest.fixture(scope="module")
def tracker(
    isolated_env: IsolatedEnvironment, pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningTracker]:
    running = start_tracker(
        isolated_env,
        tmp_path_factory.mktemp("tracker-streams"),
        WCE_PROGRESS_STREAMS_PER_KEY=str(PER_KEY),
        WCE_PROGRESS_STREAMS_MAX=str(TOTAL),
        WCE_PROGRESS_STREAM_MAX_LIFETIME_S=str(LIFETIME_S),
    )
    try:
        yield running
    finally:
        running.process.stop()


def stream_url(tracker: RunningTracker, campaign_id: object) -> str:
    return f"{tracker.url}/v1/campaigns/{campaign_id}/progress/stream"


async def event_names(response: httpx.Response) -> list[str]:
    return [line[len("event: ") :] async for line in response.aiter_lines() if line.startswith("event: ")]


@contextlib.asynccontextmanager
async def open_streams(
    client: httpx.AsyncClient, url: str, tenant: SeededTenant, count: int
) -> AsyncIterator[list[httpx.Response]]:
    async with contextlib.AsyncExitStack() as stack:
        responses = []
        for _ in range(count):
            response = await stack.enter_async_context(client.stream("GET", url, headers=tenant.headers))
            assert response.status_code == 200, await response.aread()
            responses.append(response)
        yield responses


async def polls_so_far(client: httpx.AsyncClient, tracker: RunningTracker) -> float:
    text = (await client.get(f"{tracker.url}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "wce_progress_polls_total":
                return sample.value
    raise AssertionError("wce_progress_polls_total missing from /metrics")


async def test_streams_past_the_per_key_and_total_caps_get_429_with_retry_after(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given two tenants with a running campaign each, and the first tenant at its cap of streams
    greedy, modest = await seed_tenant(pool), await seed_tenant(pool)
    greedy_url = stream_url(tracker, await seed_campaign(pool, greedy.id))
    modest_url = stream_url(tracker, await seed_campaign(pool, modest.id))
    async with httpx.AsyncClient(timeout=10) as client:
        async with open_streams(client, greedy_url, greedy, PER_KEY):
            # When the first tenant opens one more
            refused = await client.get(greedy_url, headers=greedy.headers)
            # Then it is refused for its key, with a delay to retry after
            assert refused.status_code == 429
            assert "API key" in refused.json()["detail"]
            assert int(refused.headers["Retry-After"]) >= 1

            # And the other tenant still gets streams up to the server's total, then 429 too
            async with open_streams(client, modest_url, modest, TOTAL - PER_KEY):
                full = await client.get(modest_url, headers=modest.headers)
                assert full.status_code == 429
                assert "server" in full.json()["detail"]

        # And once the streams close, their places are free again
        async def admitted() -> bool:
            async with client.stream("GET", modest_url, headers=modest.headers) as response:
                return response.status_code == 200

        assert await eventually(admitted)


async def test_the_stream_of_a_draft_ends_after_one_event_and_a_finished_ones_after_its_final_event(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    tenant = await seed_tenant(pool)
    draft = await seed_campaign(pool, tenant.id, state="draft")
    completed = await seed_campaign(pool, tenant.id, state="completed")
    async with httpx.AsyncClient(timeout=10, headers=tenant.headers) as client:
        async with client.stream("GET", stream_url(tracker, draft)) as response:
            assert response.status_code == 200
            assert await asyncio.wait_for(event_names(response), timeout=5) == ["draft"]
        async with client.stream("GET", stream_url(tracker, completed)) as response:
            assert await asyncio.wait_for(event_names(response), timeout=5) == ["completed"]


async def test_the_stream_of_a_running_campaign_ends_at_its_maximum_lifetime(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    async with httpx.AsyncClient(timeout=10, headers=tenant.headers) as client:
        started = time.monotonic()
        async with client.stream("GET", stream_url(tracker, campaign_id)) as response:
            names = await asyncio.wait_for(event_names(response), timeout=LIFETIME_S + 10)
    assert time.monotonic() - started >= LIFETIME_S - 0.5
    assert names and set(names) == {"progress"}


async def test_many_streams_of_one_campaign_cause_one_poll_per_interval(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a running campaign followed by as many streams as the server admits
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    await seed_recipients(pool, tenant.id, campaign_id, 5)
    url = stream_url(tracker, campaign_id)
    async with httpx.AsyncClient(timeout=10) as client:
        async with open_streams(client, url, tenant, PER_KEY) as responses:
            # When they all read for two seconds
            before = await polls_so_far(client, tracker)
            started = time.monotonic()

            async def read(response: httpx.Response) -> int:
                events = 0
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2.0):
                        async for line in response.aiter_lines():
                            events += line.startswith("event: progress")
                return events

            counts = await asyncio.gather(*(read(response) for response in responses))
            elapsed = time.monotonic() - started
            after = await polls_so_far(client, tracker)

    # Then every stream saw the campaign move on, from one poll per 0.5 s interval for them all
    assert min(counts) >= 2, counts
    assert after - before <= elapsed / 0.5 + 2, (after - before, elapsed)
