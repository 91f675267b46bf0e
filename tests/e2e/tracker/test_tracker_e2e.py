"""The tracker in the whole stack: opt-outs arriving mid-campaign, live progress through the CLI,
and every service's metrics and probes while a campaign runs."""

from __future__ import annotations

import asyncio
import sys
import uuid

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.webhooks import inbound_url
from tests.e2e.helpers import create_campaign, customers, import_customers, new_tenant, wait_for_state
from tests.support import ROOT, Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _base_urls(stack: Stack) -> dict[str, str]:
    return {
        name: (process.health_url or "").removesuffix("/healthz")
        for name, process in stack.processes.items()
        if name != "simulator"
    }


def _metric_total(text: str, sample_name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_a_stop_during_a_campaign_suppresses_the_number_and_nothing_more_is_sent_to_it(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a campaign to 40 customers running at 10 messages a second
    tenant = await new_tenant(stack, rate=10)
    await import_customers(stack, tenant, customers(40, start=70_000))
    started = await create_campaign(stack, tenant)
    campaign_id = uuid.UUID(started["id"])

    async def waiting_number() -> str | None:
        row = await pool.fetchrow(
            "SELECT phone_e164 FROM recipients WHERE campaign_id = $1 AND state IN ('pending', 'queued')"
            " ORDER BY id DESC LIMIT 1",
            campaign_id,
        )
        sent = await pool.fetchval(
            "SELECT count(*) FROM recipients WHERE campaign_id = $1 AND state NOT IN ('pending', 'queued')",
            campaign_id,
        )
        return row["phone_e164"] if row is not None and sent > 0 else None

    number = None
    for _ in range(200):
        number = await waiting_number()
        if number:
            break
        await asyncio.sleep(0.05)
    assert number is not None, "the campaign did not start sending"

    # When a customer not yet messaged replies STOP through Twilio's inbound webhook
    async with SimulatorAdmin(stack.simulator_url) as sim:
        reply = await sim.inbound(
            tenant.account_sid,
            number,
            tenant.whatsapp_from,
            "STOP",
            url=inbound_url(stack.tracker_url, tenant.id),
        )
    assert reply["status"] == 200, reply

    # Then the campaign completes without ever sending to that number
    await wait_for_state(stack, tenant, started["id"], {"completed"}, timeout_s=60)
    async with SimulatorAdmin(stack.simulator_url) as sim:
        stats = await sim.stats(tenant.account_sid)
    sent_to = {address.removeprefix("whatsapp:") for address in stats["per_to"]}
    assert number not in sent_to
    assert len(sent_to) == 39
    assert stats["accepted_total"] == 39

    # And the number is on the tenant's suppression list from the inbound message, with its history
    suppression = await pool.fetchrow(
        "SELECT source FROM suppressions WHERE tenant_id = $1 AND phone_e164 = $2",
        uuid.UUID(tenant.id),
        number,
    )
    assert suppression is not None and suppression["source"] == "inbound"
    assert (
        await pool.fetchval(
            "SELECT state FROM recipients WHERE campaign_id = $1 AND phone_e164 = $2", campaign_id, number
        )
        == "suppressed"
    )
    assert (
        await pool.fetchval(
            "SELECT action FROM inbound_messages WHERE tenant_id = $1 AND phone_e164 = $2",
            uuid.UUID(tenant.id),
            number,
        )
        == "opt_out"
    )


async def test_the_cli_follows_a_real_campaign_to_the_end_while_metrics_and_probes_reflect_it(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant about to send to 60 customers, and every service's metrics before
    tenant = await new_tenant(stack, rate=30)
    await import_customers(stack, tenant, customers(60, start=80_000))
    services = _base_urls(stack)
    async with httpx.AsyncClient(timeout=10) as client:
        before = {name: (await client.get(f"{url}/metrics")).text for name, url in services.items()}

    # When the campaign runs while the CLI follows its progress
    started = await create_campaign(stack, tenant)
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wce_cli",
        "progress",
        started["id"],
        "--tracker-url",
        stack.tracker_url,
        "--api-key",
        tenant.api_key,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "120"},
    )
    output, _ = await asyncio.wait_for(cli.communicate(), timeout=90)

    # Then the CLI ends with the campaign, showing its summary
    assert cli.returncode == 0, output.decode()
    assert "completed" in output.decode()

    # And every service's metrics parse and the send and delivery counters moved
    async with SimulatorAdmin(stack.simulator_url) as sim:
        await sim.wait_callbacks_settled(tenant.account_sid, timeout_s=30)
    async with httpx.AsyncClient(timeout=10) as client:
        after = {name: (await client.get(f"{url}/metrics")).text for name, url in services.items()}
        ready = {name: await client.get(f"{url}/readyz") for name, url in services.items()}
    for text in after.values():
        assert list(text_string_to_metric_families(text))
    sent = sum(
        _metric_total(after[name], "wce_messages_total", tenant=tenant.id, outcome="sent")
        - _metric_total(before[name], "wce_messages_total", tenant=tenant.id, outcome="sent")
        for name in services
    )
    assert sent == 60
    callbacks = _metric_total(after["tracker"], "wce_status_callbacks_total") - _metric_total(
        before["tracker"], "wce_status_callbacks_total"
    )
    assert callbacks >= 60

    # And every service is live and ready, with its database and broker checks
    for name, answer in ready.items():
        assert answer.status_code == 200, name
        assert answer.json()["ready"] is True, name
        assert set(answer.json()["checks"]) >= {"database", "broker"}, name
