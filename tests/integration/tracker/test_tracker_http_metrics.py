"""A running service observes its HTTP requests: the tenant API by route template and the webhooks
served in front of FastAPI, on the service's own /metrics."""

from __future__ import annotations

import re
import uuid

import asyncpg
import httpx

from tests.integration.tracker.helpers import RunningTracker, seed_campaign, seed_tenant


def observed(metrics: str, **labels: str) -> float:
    wanted = ",".join(f'{name}="{value}"' for name, value in labels.items())
    pattern = re.compile(r"^wce_http_request_duration_seconds_count\{(.*)\} (\S+)$", re.MULTILINE)
    for found, value in pattern.findall(metrics):
        if all(pair in found for pair in wanted.split(",")):
            return float(value)
    return 0.0


async def test_the_tracker_counts_api_and_webhook_requests_by_route_template(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    async with httpx.AsyncClient(base_url=tracker.url, timeout=10) as client:
        assert (await client.get(f"/v1/campaigns/{campaign_id}/progress", headers=tenant.headers)).is_success
        missing = await client.get(f"/v1/campaigns/{uuid.uuid4()}/progress", headers=tenant.headers)
        assert missing.status_code == 404
        unsigned = await client.post(f"/twilio/status/{tenant.id}", data={"MessageSid": "SM1"})
        assert unsigned.status_code == 403
        metrics = (await client.get("/metrics")).text

    route = "/v1/campaigns/{campaign_id}/progress"
    assert observed(metrics, service="tracker", route=route, method="GET", status="200") >= 1
    assert observed(metrics, service="tracker", route=route, method="GET", status="404") >= 1
    assert (
        observed(metrics, service="tracker", route="/twilio/status/{tenant}", method="POST", status="403")
        >= 1
    )
    assert str(campaign_id) not in metrics
