"""Live views: the progress stream (SSE) and the Prometheus metrics while a campaign moves."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import asyncpg
import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from shared import topology
from tests.integration.tracker.helpers import (
    RunningTracker,
    eventually,
    seed_campaign,
    seed_recipients,
    seed_tenant,
    status_params,
)


async def _read_events(response: httpx.Response, on_event: Any) -> list[tuple[float, str, dict[str, Any]]]:
    events: list[tuple[float, str, dict[str, Any]]] = []
    name, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and data:
            events.append((time.monotonic(), name, orjson.loads(data)))
            await on_event(events)
            name, data = "message", ""
    return events


async def test_the_progress_stream_pushes_at_least_once_a_second_and_ends_with_a_completed_event(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a running campaign with 40 pending recipients
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    recipients = await seed_recipients(
        pool, tenant.id, campaign_id, 40, state="pending", with_sid=False, start=900
    )

    async def campaign_moves(events: list[tuple[float, str, dict[str, Any]]]) -> None:
        # While the client listens, ten recipients are sent per event; after four events it completes
        count = len(events)
        if count <= 4:
            batch = [r.id for r in recipients[(count - 1) * 10 : count * 10]]
            await pool.execute(
                "UPDATE recipients SET state = 'sent', sent_at = now() WHERE id = ANY($1)", batch
            )
        if count == 4:
            await pool.execute(
                "UPDATE campaigns SET state = 'completed', completed_at = now() WHERE id = $1", campaign_id
            )

    # When a client follows the progress stream
    url = f"{tracker.url}/v1/campaigns/{campaign_id}/progress/stream"
    async with httpx.AsyncClient(timeout=10, headers=tenant.headers) as client:
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = await asyncio.wait_for(_read_events(response, campaign_moves), timeout=20)

    # Then it got progress at least once a second, seeing the counts move
    names = [name for _, name, _ in events]
    assert names[:-1] == ["progress"] * (len(events) - 1)
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(events)]
    assert max(gaps) <= 1.0, gaps
    sent_counts = [body["counts"]["sent"] for _, _, body in events]
    assert sent_counts == sorted(sent_counts)
    assert sent_counts[0] < sent_counts[-1] == 40

    # And a final completed event, after which the stream closed
    assert names[-1] == "completed"
    assert events[-1][2]["state"] == "completed"
    assert events[-1][2]["remaining"] == 0


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_parse_and_change_as_a_campaign_runs(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a running campaign of 10 sent messages and the metrics before its callbacks
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    recipients = await seed_recipients(pool, tenant.id, campaign_id, 10, start=950)
    tenant_label = str(tenant.id)
    async with httpx.AsyncClient(timeout=10) as client:
        before = _samples((await client.get(f"{tracker.url}/metrics")).text)

        # When every message is delivered through callbacks
        for recipient in recipients:
            assert recipient.sid is not None
            await tracker.post_status(client, tenant, status_params(recipient.sid, "delivered"))

        # Then the metrics (which parse) count the callbacks and show the campaign's progress
        async def moved() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            after = _samples((await client.get(f"{tracker.url}/metrics")).text)
            delivered = (("state", "delivered"), ("tenant", tenant_label))
            return after if after.get(("wce_campaign_recipients", delivered)) == 10 else None

        after = await eventually(moved)

    assert after is not None
    delivered_key = ("wce_status_callbacks_total", (("status", "delivered"),))
    assert after[delivered_key] - before.get(delivered_key, 0) == 10
    assert after[("wce_running_campaigns", (("tenant", tenant_label),))] >= 1
    assert ("wce_queue_depth", (("queue", topology.STATUS_QUEUE),)) in after
    assert ("wce_queue_depth", (("queue", topology.parked_queue_name(topology.SEND_QUEUE)),)) in after
    lag_count = "wce_status_callback_lag_seconds_count", ()
    assert after[lag_count] - before.get(lag_count, 0) >= 10

    # And once the campaign completes, its tenant's progress gauge drops to zero
    await pool.execute("UPDATE campaigns SET state = 'completed' WHERE id = $1", campaign_id)
    async with httpx.AsyncClient(timeout=10) as client:

        async def cleared() -> bool:
            now = _samples((await client.get(f"{tracker.url}/metrics")).text)
            return (
                now.get(("wce_campaign_recipients", (("state", "delivered"), ("tenant", tenant_label)))) == 0
            )

        assert await eventually(cleared)
