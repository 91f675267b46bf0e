"""A 100,000-recipient CSV export streams with flat memory in the tracker."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import psutil

from tests.integration.tracker.helpers import RunningTracker, seed_campaign, seed_recipients, seed_tenant

ROWS = 100_000
# Holding 100k rows would cost well over 100 MB (records plus text); streaming needs a few MB.
MAX_GROWTH_BYTES = 40 * 1024 * 1024


async def test_a_100k_recipient_csv_streams_with_flat_server_memory(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a campaign of 100,000 recipients, and the tracker warmed up with a small export
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id, state="completed")
    await seed_recipients(pool, tenant.id, campaign_id, ROWS, start=1_000_000)
    small = await seed_campaign(pool, tenant.id, state="completed")
    await seed_recipients(pool, tenant.id, small, 10, start=2_000_000)
    server = psutil.Process(tracker.process.proc.pid)
    async with httpx.AsyncClient(timeout=120, headers=tenant.headers) as client:
        await client.get(f"{tracker.url}/v1/campaigns/{small}/recipients.csv")
        baseline = server.memory_info().rss

        # When the tenant downloads the full export, reading it slowly
        peak = baseline
        lines = 0
        tail = b""
        url = f"{tracker.url}/v1/campaigns/{campaign_id}/recipients.csv"
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_bytes():
                lines += chunk.count(b"\n")
                tail = (tail + chunk)[-200:]
                peak = max(peak, server.memory_info().rss)
                await asyncio.sleep(0)

    # Then every row arrived, and the server's memory stayed flat while they streamed
    assert lines == ROWS + 1
    assert tail.endswith(b"\r\n")
    assert peak - baseline < MAX_GROWTH_BYTES, f"grew {(peak - baseline) / 1e6:.1f} MB"
