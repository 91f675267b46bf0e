"""The tenant CLI against a running tracker: live progress to the end, and the CSV export."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg

from tests.integration.tracker.helpers import RunningTracker, seed_campaign, seed_recipients, seed_tenant
from tests.support import ROOT


async def _cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wce_cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "120", "TERM": "dumb"},
    )


async def test_the_cli_follows_progress_until_the_campaign_completes_and_prints_a_summary(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a running campaign with 5 recipients pending
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    await seed_recipients(pool, tenant.id, campaign_id, 5, state="pending", with_sid=False, start=4_000_000)

    # When the CLI follows it, and the campaign then goes through and completes
    process = await _cli("progress", str(campaign_id), "--api-url", tracker.url, "--api-key", tenant.api_key)
    await asyncio.sleep(1.5)
    await pool.execute("UPDATE recipients SET state = 'delivered' WHERE campaign_id = $1", campaign_id)
    await pool.execute("UPDATE campaigns SET state = 'completed' WHERE id = $1", campaign_id)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)

    # Then it exits 0 with a summary by state
    text = output.decode()
    assert process.returncode == 0, text
    assert "completed" in text
    assert "delivered" in text


async def test_the_cli_exports_csv_and_reports_a_missing_campaign(
    tracker: RunningTracker, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id, state="completed")
    await seed_recipients(pool, tenant.id, campaign_id, 3, start=4_100_000)
    target = tmp_path / "out.csv"

    exported = await _cli(
        "export-csv",
        str(campaign_id),
        "-o",
        str(target),
        "--bom",
        "--api-url",
        tracker.url,
        "--api-key",
        tenant.api_key,
    )
    missing = await _cli("progress", str(tenant.id), "--api-url", tracker.url, "--api-key", tenant.api_key)
    await asyncio.wait_for(exported.communicate(), timeout=30)
    missing_output, _ = await asyncio.wait_for(missing.communicate(), timeout=30)

    assert exported.returncode == 0
    lines = target.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("recipient_id,name,phone,state")
    assert len(lines) == 4
    assert missing.returncode == 1
    assert b"404" in missing_output
