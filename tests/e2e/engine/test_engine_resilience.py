"""Exactly once through crashes: senders killed with SIGKILL, broker connections closed,
database backends terminated, a graceful SIGTERM — the campaign completes, every recipient ends
in a final state, and Twilio (the simulator) sees no number twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid

import asyncpg
import pytest

from tests.e2e.engine.engine_helpers import (
    seed_customers,
    sent_count,
    simulator_stats,
    wait_sent,
    wait_settled,
)
from tests.e2e.helpers import TenantHandle, create_campaign, new_tenant, wait_for_state
from tests.support import BASE_DATABASE_URL, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

DELIVERED = {"sent", "delivered", "read"}


async def unknown_phones(pool: asyncpg.Pool, campaign_id: str) -> set[str]:
    rows = await pool.fetch(
        "SELECT DISTINCT r.phone_e164 FROM message_events e JOIN recipients r ON r.id = e.recipient_id"
        " WHERE e.campaign_id = $1 AND e.to_state = 'unknown'",
        uuid.UUID(campaign_id),
    )
    return {row["phone_e164"] for row in rows}


async def assert_exactly_once(
    stack: Stack, pool: asyncpg.Pool, tenant: TenantHandle, campaign_id: str, total: int
) -> dict[str, int]:
    """Every recipient sent; the simulator saw every number once, those whose send went through
    ``unknown`` included (counted and reported). Returns the counts by state."""
    counts = await wait_settled(pool, campaign_id, total, timeout_s=240, stack=stack)
    await wait_for_state(stack, tenant, campaign_id, {"completed"}, timeout_s=60)
    stats = await simulator_stats(stack, tenant.account_sid)
    via_unknown = await unknown_phones(pool, campaign_id)
    duplicates = {phone.removeprefix("whatsapp:"): n for phone, n in stats["duplicates"].items()}
    print(f"\nstates={counts} resolved_from_unknown={len(via_unknown)} duplicates={len(duplicates)}")
    assert not duplicates, duplicates
    assert sum(counts.get(state, 0) for state in DELIVERED) == total, counts
    assert len(stats["per_to"]) == total
    return counts


async def assert_still_sending(pool: asyncpg.Pool, campaign_id: str, total: int) -> None:
    """The fault came while the campaign had recipients left to send (or it proved nothing)."""
    sent = await sent_count(pool, campaign_id)
    assert sent < total, f"all {total} were sent before the fault ended"


async def test_an_8000_recipient_campaign_survives_three_sender_kills_without_a_duplicate(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given an 8,000-recipient campaign running on two senders, paced at 120/s so that each kill
    # comes with thousands still to send: an unpaced one sends 8,000 in seconds, and a restarted
    # sender takes up to 15 s to be healthy on a busy machine
    tenant = await new_tenant(engine_stack, rate=120)
    await seed_customers(pool, tenant, 8_000)
    started = await create_campaign(engine_stack, tenant)
    campaign_id = started["id"]

    # When a sender is killed with SIGKILL three times while it sends (and restarted each time),
    # every kill with thousands of recipients still to send
    for round_, victim in enumerate(("sender0", "sender1", "sender0"), start=1):
        await wait_sent(pool, campaign_id, round_ * 1500)
        process = engine_stack.processes[victim]
        process.kill()
        await assert_still_sending(pool, campaign_id, 8_000)
        process.restart()
        await asyncio.to_thread(process.wait_healthy, 60)

    # Then every recipient ends sent, and no number reached Twilio twice
    await assert_exactly_once(engine_stack, pool, tenant, campaign_id, 8_000)


async def test_closing_every_broker_connection_mid_campaign_loses_and_duplicates_nothing(
    engine_stack: Stack, pool: asyncpg.Pool, isolated_env: object
) -> None:
    # Given a running 4,000-recipient campaign, paced at 100/s so that it still has thousands to
    # send when the connections close: rabbitmqctl boots a runtime of its own, which takes a second
    # or two on a quiet machine and over ten on a busy one, while an unpaced campaign sends 4,000
    # in a few seconds
    tenant = await new_tenant(engine_stack, rate=100)
    await seed_customers(pool, tenant, 4_000, start=100_000)
    started = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, started["id"], 1000)

    # When the broker closes every connection of this stack's vhost
    vhost = engine_stack.env["WCE_AMQP_URL"].rsplit("/", 1)[-1]
    await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "test: connections dropped"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    await assert_still_sending(pool, started["id"], 4_000)

    # Then the services reconnect and the campaign completes exactly once per number
    await assert_exactly_once(engine_stack, pool, tenant, started["id"], 4_000)


async def test_terminating_every_database_backend_mid_campaign_loses_and_duplicates_nothing(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a running 3,000-recipient campaign
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 3_000, start=200_000)
    started = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, started["id"], 750)

    # When every backend of the database is terminated, twice in a row
    database = engine_stack.env["WCE_DATABASE_URL"].rsplit("/", 1)[-1]
    admin = await asyncpg.connect(BASE_DATABASE_URL)
    try:
        for _ in range(2):
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    await assert_still_sending(pool, started["id"], 3_000)

    # Then the services recover and the campaign completes exactly once per number
    await assert_exactly_once(engine_stack, pool, tenant, started["id"], 3_000)


async def test_a_sender_stopped_with_sigterm_records_its_calls_and_leaves_the_rest(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a running 4,000-recipient campaign (the stop drains the sender's chunks first)
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 4_000, start=300_000)
    started = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, started["id"], 1000)

    # When one sender is stopped gracefully
    process = engine_stack.processes["sender1"]
    returncode = await asyncio.to_thread(process.stop)
    await assert_still_sending(pool, started["id"], 4_000)

    # Then it exits after a graceful shutdown (uvicorn re-raises the signal it handled)
    assert returncode in (0, -signal.SIGTERM), process.log_path.read_text()[-3000:]
    # And the other sender finishes the campaign, once per number
    await assert_exactly_once(engine_stack, pool, tenant, started["id"], 4_000)
    # And the stopped sender had recorded every call it made: none of its rows waited for a lease
    expired = await pool.fetchval(
        "SELECT count(*) FROM message_events WHERE campaign_id = $1 AND source = 'lease'",
        uuid.UUID(started["id"]),
    )
    assert expired == 0
    process.restart()
    await asyncio.to_thread(process.wait_healthy, 60)
