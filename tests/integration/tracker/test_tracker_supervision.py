"""The tracker's background work survives the database terminating its connections, and /readyz
and the task gauge report the supervised tasks."""

from __future__ import annotations

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.tracker.helpers import (
    RunningTracker,
    eventually,
    seed_campaign,
    seed_recipients,
    seed_tenant,
    status_params,
)
from tests.support import IsolatedEnvironment

# Outbound webhook delivery is on by default (WCE_WEBHOOK_DELIVERY_ENABLED), and supervised too.
TASKS = {
    "status_batches",
    "orphan_matching",
    "state_count_folding",
    "metrics_sampling",
    "active_tenants",
    "webhook_deliveries",
    "webhook_feed",
}


async def _tasks_up(client: httpx.AsyncClient, tracker: RunningTracker) -> dict[str, float]:
    text = (await client.get(f"{tracker.url}/metrics")).text
    return {
        sample.labels["task"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "wce_background_task_up"
        for sample in family.samples
        if sample.labels.get("service") == "tracker"
    }


async def test_readiness_and_the_gauge_report_every_supervised_task_of_the_tracker(
    tracker: RunningTracker,
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        ready = await client.get(f"{tracker.url}/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["background_tasks"] is True
        assert await _tasks_up(client, tracker) == dict.fromkeys(TASKS, 1.0)


async def test_callbacks_are_written_after_the_database_terminated_every_tracker_connection(
    tracker: RunningTracker, pool: asyncpg.Pool, isolated_env: IsolatedEnvironment
) -> None:
    # Given sent recipients whose statuses are being written
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    recipients = await seed_recipients(pool, tenant.id, campaign_id, 40)
    async with httpx.AsyncClient(timeout=10) as client:
        for recipient in recipients[:20]:
            assert recipient.sid is not None
            await tracker.post_status(client, tenant, status_params(recipient.sid, "delivered"))

        # When every backend of the database is terminated, twice, while callbacks arrive
        admin = await asyncpg.connect(isolated_env.database_url)
        try:
            for recipient in recipients[20:]:
                if recipient is recipients[20] or recipient is recipients[30]:
                    await admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                assert recipient.sid is not None
                await tracker.post_status(client, tenant, status_params(recipient.sid, "delivered"))
        finally:
            await admin.close()
        await pool.expire_connections()

        # Then every status is written, and the tracker's tasks are all up again (a task whose
        # connection was terminated under it dies and is restarted after its back-off: 0.5 s, then
        # twice as long for each death in a row)
        async def delivered() -> bool:
            count = await pool.fetchval(
                "SELECT count(*) FROM recipients WHERE campaign_id = $1 AND state = 'delivered'", campaign_id
            )
            return bool(count == 40)

        async def all_up() -> bool:
            return await _tasks_up(client, tracker) == dict.fromkeys(TASKS, 1.0)

        assert await eventually(delivered, timeout_s=30)
        assert await eventually(all_up, timeout_s=30), await _tasks_up(client, tracker)
        assert (await client.get(f"{tracker.url}/readyz")).json()["ready"] is True
