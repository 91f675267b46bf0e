"""The retention command deletes what is older than the configured age and keeps the rest."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import timedelta

import asyncpg

from tests.integration.tracker.helpers import seed_campaign, seed_recipients, seed_tenant
from tests.support import ROOT, IsolatedEnvironment


async def test_retention_deletes_events_receipts_orphans_and_inbound_messages_older_than_the_age(
    isolated_env: IsolatedEnvironment, pool: asyncpg.Pool
) -> None:
    # Given events, receipts, kept callbacks and inbound messages of 100 days ago and of today
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    [recipient] = await seed_recipients(pool, tenant.id, campaign_id, 1, start=3_000_000)
    marker = uuid.uuid4().hex
    for age in (timedelta(days=100), timedelta(days=1)):
        await pool.execute(
            "INSERT INTO message_events (tenant_id, campaign_id, recipient_id, to_state, source, detail, at)"
            " VALUES ($1, $2, $3, 'sent', 'test', $4, now() - $5::interval)",
            tenant.id,
            campaign_id,
            recipient.id,
            marker,
            age,
        )
        await pool.execute(
            "INSERT INTO callback_receipts (tenant_id, dedupe_key, received_at)"
            " VALUES ($1, $2, now() - $3::interval)",
            tenant.id,
            f"{marker}-{age.days}",
            age,
        )
        await pool.execute(
            "INSERT INTO orphan_callbacks (tenant_id, message_sid, status, payload, received_at)"
            " VALUES ($1, $2, 'sent', '{}', now() - $3::interval)",
            tenant.id,
            f"SM{marker}-{age.days}",
            age,
        )
        await pool.execute(
            "INSERT INTO inbound_messages (tenant_id, message_sid, phone_e164, body, received_at)"
            " VALUES ($1, $2, '+14155550100', 'STOP', now() - $3::interval)",
            tenant.id,
            f"SM{marker}-{age.days}",
            age,
        )

    # When the retention command runs for 90 days
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.tracker.retention",
        "--older-than-days",
        "90",
        cwd=ROOT,
        env={**isolated_env.env(), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output.decode()

    # Then only today's rows are left
    assert await pool.fetchval("SELECT count(*) FROM message_events WHERE detail = $1", marker) == 1
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM callback_receipts WHERE tenant_id = $1 AND dedupe_key LIKE $2",
            tenant.id,
            f"{marker}%",
        )
        == 1
    )
    for table in ("orphan_callbacks", "inbound_messages"):
        remaining = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE message_sid LIKE $1",
            f"SM{marker}-%",
        )
        assert remaining == 1, table
    assert b"deleted" in output
