"""The tenant CLI through its own entry point (`wce`), against a running tracker and tenant API:
live progress to the end or to a pause, CSV export, campaign listing and steering, and mistakes
answered with one line and a non-zero exit."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.integration.tracker.helpers import (
    RunningTracker,
    eventually,
    seed_campaign,
    seed_recipients,
    seed_tenant,
)
from tests.support import OPERATOR_TOKEN, ROOT, IsolatedEnvironment, ManagedProcess, free_port

WCE = str(Path(sys.executable).parent / "wce")


@pytest.fixture(scope="module")
def tenant_api(
    isolated_env: IsolatedEnvironment, pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The segmenter (the tenant API) on the session's database and vhost."""
    port = free_port()
    process = ManagedProcess(
        "services.segmenter",
        isolated_env.env(WCE_SEGMENTER_PORT=str(port)),
        f"http://127.0.0.1:{port}/readyz",
        tmp_path_factory.mktemp("segmenter"),
    )
    try:
        process.wait_healthy()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


async def _cli(*args: str, **env: str) -> asyncio.subprocess.Process:
    # Only the virtualenv's `wce` script, nothing activated: what a user has after `make install`.
    return await asyncio.create_subprocess_exec(
        WCE,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "120", "TERM": "dumb", **env},
    )


async def _finish(process: asyncio.subprocess.Process, timeout_s: float = 30) -> tuple[str, str]:
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    return out.decode(), err.decode()


async def test_the_cli_follows_progress_until_the_campaign_completes_and_prints_a_summary(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a running campaign with 5 recipients pending
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    await seed_recipients(pool, tenant.id, campaign_id, 5, state="pending", with_sid=False, start=4_000_000)

    # When the CLI follows it, and the campaign then goes through and completes
    process = await _cli(
        "progress", str(campaign_id), "--tracker-url", tracker.url, "--api-key", tenant.api_key
    )
    await asyncio.sleep(1.5)
    await pool.execute("UPDATE recipients SET state = 'delivered' WHERE campaign_id = $1", campaign_id)
    await pool.execute("UPDATE campaigns SET state = 'completed' WHERE id = $1", campaign_id)
    out, err = await _finish(process)

    # Then it exits 0 with a summary by state
    assert process.returncode == 0, out + err
    assert "completed" in out
    assert "delivered" in out


async def test_progress_of_a_campaign_that_gets_paused_exits_with_the_reason(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a running campaign the CLI follows, with its key from the environment
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    await seed_recipients(pool, tenant.id, campaign_id, 3, state="pending", with_sid=False, start=4_200_000)
    process = await _cli(
        "progress", str(campaign_id), WCE_TRACKER_URL=tracker.url, WCE_API_KEY=tenant.api_key
    )
    await asyncio.sleep(1.0)

    # When the campaign is paused by the engine
    await pool.execute(
        "UPDATE campaigns SET state = 'paused', pause_reason = 'twilio_auth_error' WHERE id = $1", campaign_id
    )
    out, err = await _finish(process)

    # Then the CLI stops following, says why and how to go on, and exits 3
    assert process.returncode == 3, out + err
    assert "paused (twilio_auth_error)" in out
    assert f"wce campaigns resume {campaign_id}" in out


async def test_the_cli_exports_csv_and_reports_a_missing_campaign_in_one_line(
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
        "--tracker-url",
        tracker.url,
        "--api-key",
        tenant.api_key,
    )
    missing = await _cli(
        "progress", str(tenant.id), "--tracker-url", tracker.url, "--api-key", tenant.api_key
    )
    await _finish(exported)
    _, missing_err = await _finish(missing)

    assert exported.returncode == 0
    lines = target.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("recipient_id,name,phone,state")
    assert len(lines) == 4
    assert missing.returncode == 1
    assert missing_err.strip() == "error: HTTP 404: campaign not found"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("export-csv", "c1", "-o", "x.csv"), 2, "error: no API key: pass --api-key KEY or set WCE_API_KEY"),
        (("logs", "c1", "--api-key", "k", "--tracker-url", "http://127.0.0.1:9"), 1, "cannot reach"),
        (("campaigns", "list", "--api-key", "k", "--api-url", "http://127.0.0.1:9"), 1, "cannot reach"),
    ],
)
async def test_mistakes_give_one_line_and_a_non_zero_exit(
    args: tuple[str, ...], code: int, message: str
) -> None:
    process = await _cli(*args)
    out, err = await _finish(process)
    assert process.returncode == code, out + err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err


async def test_an_invalid_campaign_id_names_the_field(tracker: RunningTracker, pool: asyncpg.Pool) -> None:
    tenant = await seed_tenant(pool)
    process = await _cli("logs", "not-an-id", "--tracker-url", tracker.url, "--api-key", tenant.api_key)
    _, err = await _finish(process)
    assert process.returncode == 1
    assert err.startswith("error: HTTP 422: campaign_id:"), err
    assert len(err.strip().splitlines()) == 1, err


async def test_campaigns_are_listed_and_a_paused_one_resumed(
    tenant_api: str, tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a tenant with a completed campaign and a paused one
    tenant = await seed_tenant(pool)
    await seed_campaign(pool, tenant.id, state="completed")
    paused = await seed_campaign(pool, tenant.id, state="paused")
    await seed_recipients(pool, tenant.id, paused, 2, state="pending", with_sid=False, start=4_300_000)
    env = {"WCE_API_URL": tenant_api, "WCE_API_KEY": tenant.api_key}

    # When they are listed, and the paused one resumed
    listed = await _cli("campaigns", "list", **env)
    list_out, list_err = await _finish(listed)
    resumed = await _cli("campaigns", "resume", str(paused), **env)
    resume_out, resume_err = await _finish(resumed)

    # Then both show with their states, and the campaign runs again
    assert listed.returncode == 0, list_out + list_err
    assert str(paused) in list_out and "paused" in list_out and "completed" in list_out
    assert resumed.returncode == 0, resume_out + resume_err
    assert f"campaign {paused}: running" in resume_out
    assert await pool.fetchval("SELECT state FROM campaigns WHERE id = $1", paused) == "running"

    # And resuming it twice is a conflict, answered in one line
    again = await _cli("campaigns", "resume", str(paused), **env)
    _, again_err = await _finish(again)
    assert again.returncode == 1
    assert again_err.startswith("error: HTTP 409:"), again_err


async def test_campaigns_are_listed_by_state_and_kind_and_tenants_by_the_operator(
    tenant_api: str, pool: asyncpg.Pool
) -> None:
    # Given a tenant with a completed, a paused and a running campaign
    tenant = await seed_tenant(pool)
    completed = await seed_campaign(pool, tenant.id, state="completed")
    paused = await seed_campaign(pool, tenant.id, state="paused")
    running = await seed_campaign(pool, tenant.id, state="running")
    # Recipients still to send: a running campaign without any is completed at once.
    for campaign, start in ((paused, 4_400_000), (running, 4_400_010)):
        await seed_recipients(pool, tenant.id, campaign, 2, state="pending", with_sid=False, start=start)
    env = {"WCE_API_URL": tenant_api, "WCE_API_KEY": tenant.api_key}

    # When the paused and running ones are asked for (the option repeated), of kind campaign
    listed = await _cli(
        "campaigns", "list", "--state", "paused", "--state", "running", "--kind", "campaign", **env
    )
    out, err = await _finish(listed)
    bad = await _cli("campaigns", "list", "--state", "shipped", **env)
    _, bad_err = await _finish(bad)

    # Then exactly those two are listed, and an unknown state is named in one line
    assert listed.returncode == 0, out + err
    assert str(paused) in out and str(running) in out and str(completed) not in out
    assert bad.returncode == 1 and bad_err.startswith("error: HTTP 422: state"), bad_err

    # And the operator lists the tenants, this one among them, by its name
    name = await pool.fetchval("SELECT name FROM tenants WHERE id = $1", tenant.id)
    tenants = await _cli(
        "tenants",
        "list",
        "--name",
        name,
        "--active",
        WCE_API_URL=tenant_api,
        WCE_OPERATOR_TOKEN=OPERATOR_TOKEN,
    )
    tenants_out, tenants_err = await _finish(tenants)
    assert tenants.returncode == 0, tenants_out + tenants_err
    assert str(tenant.id) in tenants_out and "active" in tenants_out


async def test_replies_are_listed_for_the_tenant_a_campaign_and_one_recipient(
    tracker: RunningTracker, pool: asyncpg.Pool
) -> None:
    # Given a campaign sent to two numbers, and a reply from the first
    tenant = await seed_tenant(pool)
    campaign_id = await seed_campaign(pool, tenant.id)
    sent = await seed_recipients(pool, tenant.id, campaign_id, 2, start=4_400_000)
    async with httpx.AsyncClient(timeout=10) as client:
        await tracker.post_inbound(client, tenant, sender=sent[0].phone, body="See you Friday")

    async def stored() -> bool:
        return bool(
            await pool.fetchval("SELECT count(*) FROM inbound_messages WHERE tenant_id = $1", tenant.id)
        )

    assert await eventually(stored)
    env = {"WCE_TRACKER_URL": tracker.url, "WCE_API_KEY": tenant.api_key, "COLUMNS": "200"}

    # When the CLI lists the tenant's, the campaign's and each recipient's replies
    answers = {}
    for name, args in {
        "tenant": (),
        "campaign": (str(campaign_id),),
        "first": (str(campaign_id), "--recipient", str(sent[0].id)),
        "second": (str(campaign_id), "--recipient", str(sent[1].id)),
        "no campaign": ("--recipient", str(sent[0].id)),
    }.items():
        process = await _cli("replies", *args, **env)
        out, err = await _finish(process)
        answers[name] = (process.returncode, out, err)

    # Then the reply shows with its campaign wherever it belongs, and nowhere else
    for name in ("tenant", "campaign", "first"):
        code, out, err = answers[name]
        assert code == 0, out + err
        assert "See you Friday" in out and str(campaign_id) in out
    assert answers["second"][0] == 0 and "See you Friday" not in answers["second"][1]
    assert answers["no campaign"][0] == 2
    assert answers["no campaign"][2].strip() == "error: --recipient needs the campaign id"


async def test_services_and_locations_are_listed_across_pages_by_name_and_only_the_tenants_own(
    tenant_api: str, pool: asyncpg.Pool
) -> None:
    # Given a tenant with 1,205 services and two locations, and another tenant with its own service
    tenant = await seed_tenant(pool)
    other = await seed_tenant(pool)
    await pool.execute(
        "INSERT INTO services (tenant_id, external_id, name)"
        " SELECT $1, 'svc-' || lpad(g::text, 4, '0'), 'Service ' || g FROM generate_series(1, 1205) g",
        tenant.id,
    )
    await pool.execute(
        "INSERT INTO services (tenant_id, external_id, name) VALUES ($1, 'theirs', 'Not yours')", other.id
    )
    await pool.execute(
        "INSERT INTO locations (tenant_id, external_id, name, address) VALUES"
        " ($1, 'loc-1', 'Downtown', '1 Main St'), ($1, 'loc-2', 'Uptown', NULL)",
        tenant.id,
    )
    env = {"WCE_API_URL": tenant_api, "WCE_API_KEY": tenant.api_key, "COLUMNS": "200"}

    # When the services are listed whole (more than one API page), by name, and the locations
    everything = await _cli("services", "--limit", "5000", **env)
    all_out, all_err = await _finish(everything)
    named = await _cli("services", "--name", "service 120", **env)
    named_out, named_err = await _finish(named)
    places = await _cli("locations", **env)
    places_out, places_err = await _finish(places)
    nothing = await _cli("services", "--name", "no such service", **env)
    nothing_out, _ = await _finish(nothing)

    # Then every service shows once with its external id, and none of the other tenant's
    assert everything.returncode == 0, all_out + all_err
    assert all(f"svc-{i:04d}" in all_out for i in (1, 1000, 1001, 1205))
    assert sum(line.count("svc-") for line in all_out.splitlines()) == 1205
    assert "theirs" not in all_out
    # And the name filter narrows them (120 and 1200-1205 contain "service 120")
    assert named.returncode == 0, named_out + named_err
    assert sum(line.count("svc-") for line in named_out.splitlines()) == 7
    # And locations show their addresses; an empty list says so
    assert places.returncode == 0, places_out + places_err
    assert (
        "loc-1" in places_out
        and "Downtown" in places_out
        and "1 Main St" in places_out
        and "loc-2" in places_out
    )
    assert nothing.returncode == 0 and "no services" in nothing_out
