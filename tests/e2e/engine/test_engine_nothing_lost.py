"""Nothing lost, whatever dies: the tracker killed mid-campaign, the broker's connections cut, the
sender that leads maintenance frozen with SIGSTOP. Every recipient ends with a final delivery
status (not left at ``sent`` because a callback was lost), nothing is pending, and Twilio (the
simulator) saw no number twice — including the numbers whose send went through ``unknown`` (a
create that timed out on a starved simulator: "not found" is believed only once its write is
older than the late-create bound, and the simulator never processes a create after its client
gave up). Each test prints recipients, final states, duplicates, the numbers that went through
``unknown``, the creates the simulator dropped because their client had gone, and the time to
complete."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid

import asyncpg
import pytest

from tests.e2e.engine.engine_helpers import seed_customers, sent_count, simulator_stats, states, wait_sent
from tests.e2e.engine.test_engine_resilience import unknown_phones
from tests.e2e.helpers import TenantHandle, create_campaign, new_tenant, wait_for_state
from tests.support import Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Maintenance leadership fails over in about three seconds.
STACK_ENV = {"WCE_MAINTENANCE_LEASE_S": "3"}
LEASE_HOLDER = "SELECT holder FROM leader_leases WHERE name = 'sender.maintenance' AND expires_at > now()"
FINAL = {"delivered", "read"}


async def wait_final(
    stack: Stack, pool: asyncpg.Pool, tenant: TenantHandle, campaign_id: str, total: int, started: float
) -> dict[str, int]:
    """Until every recipient has a final delivery status; checks nothing went twice and reports."""
    deadline = time.monotonic() + 180
    while True:
        counts = await states(pool, campaign_id)
        if sum(counts.values()) == total and set(counts) <= FINAL:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"statuses not final after 180 s: {counts}\n{stack.logs()}")
        await asyncio.sleep(0.25)
    elapsed = time.monotonic() - started
    await wait_for_state(stack, tenant, campaign_id, {"completed"}, timeout_s=60)
    stats = await simulator_stats(stack, tenant.account_sid)
    duplicates = {phone.removeprefix("whatsapp:") for phone in stats["duplicates"]}
    via_unknown = await unknown_phones(pool, campaign_id)
    print(
        f"\nrecipients={total} final={counts} duplicates={len(duplicates)}"
        f" resolved_from_unknown={len(via_unknown)}"
        f" simulator_dropped_client_gone_so_far={stats['connections'].get('dropped_client_gone', 0)}"
        f" complete_s={elapsed:.1f} load={os.getloadavg()[0]:.1f}"
    )
    assert not duplicates, sorted(duplicates)[:10]
    assert len(stats["per_to"]) == total
    return counts


async def test_a_tracker_killed_for_eleven_seconds_loses_no_delivery_status(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a running 2,000-recipient campaign
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 2_000, start=500_000)
    started = time.monotonic()
    campaign = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, campaign["id"], 300)

    # When the tracker is killed with SIGKILL and comes back 11 s later
    tracker = engine_stack.processes["tracker"]
    tracker.kill()
    await asyncio.sleep(11)
    tracker.restart()
    await asyncio.to_thread(tracker.wait_healthy, 60)

    # Then every status callback refused meanwhile came again (Twilio retries as the URL asks):
    # every recipient is delivered or read, none twice
    await wait_final(engine_stack, pool, tenant, campaign["id"], 2_000, started)
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["callbacks_failed"] == 0, stats


async def test_cutting_every_broker_connection_loses_no_delivery_status(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a running 2,000-recipient campaign
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 2_000, start=520_000)
    started = time.monotonic()
    campaign = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, campaign["id"], 300)

    # When the broker closes every connection of the stack, twice
    vhost = engine_stack.env["WCE_AMQP_URL"].rsplit("/", 1)[-1]
    for _ in range(2):
        await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "test: connections cut"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        await asyncio.sleep(1)

    # Then callbacks answered 5xx while the tracker could not publish came again, and every
    # recipient has its final status, none sent twice
    await wait_final(engine_stack, pool, tenant, campaign["id"], 2_000, started)


async def test_freezing_the_sender_that_leads_maintenance_hands_leadership_over_within_seconds(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a running 2,000-recipient campaign and the sender holding the maintenance lease
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 2_000, start=540_000)
    started = time.monotonic()
    campaign = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, campaign["id"], 300)
    holder = None
    for _ in range(100):
        if (holder := await pool.fetchval(LEASE_HOLDER)) is not None:
            break
        await asyncio.sleep(0.1)
    assert holder is not None
    leader_pid = int(holder.split(":")[1])
    (leader,) = [
        p for name, p in engine_stack.processes.items() if name.startswith("sender") and p.pid == leader_pid
    ]

    # When it is frozen with SIGSTOP (its connections stay open, holding its claims and chunks)
    leader.proc.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        # Then the other sender takes the lease within seconds
        while True:
            current = await pool.fetchval(
                "SELECT holder FROM leader_leases WHERE name = 'sender.maintenance'"
            )
            if current is not None and current != holder:
                break
            assert time.monotonic() - frozen_at < 15, "maintenance leadership did not move"
            await asyncio.sleep(0.1)
        failover_s = time.monotonic() - frozen_at
        print(f"\nmaintenance failover after {failover_s:.1f} s")
        assert failover_s < 8

        # And the campaign completes while the sender is still frozen: its claims expire and are
        # reconciled, its chunks' rows swept and sent by the other sender
        await wait_final(engine_stack, pool, tenant, campaign["id"], 2_000, started)
    finally:
        leader.proc.send_signal(signal.SIGCONT)

    # And the sender, thawed, sends nothing twice (its claims ran out while it was frozen) and
    # does not take the lease back by force
    await asyncio.sleep(3)
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert not stats["duplicates"]
    unknown_rows = await pool.fetchval(
        "SELECT count(*) FROM recipients WHERE campaign_id = $1 AND state NOT IN ('delivered', 'read')",
        uuid.UUID(campaign["id"]),
    )
    assert unknown_rows == 0


async def test_creates_a_starved_twilio_reads_after_their_timeout_are_never_sent_twice(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a running 2,000-recipient campaign at 100 messages a second: about 20 s of creates,
    # so the fault's 4 s fall amid them (unlimited, an idle machine sent the last 1,700 before the
    # fault began)
    tenant = await new_tenant(engine_stack, rate=100)
    await seed_customers(pool, tenant, 2_000, start=560_000)
    started = time.monotonic()
    campaign = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, campaign["id"], 300)

    # When for 4 s the simulator leaves a quarter of its new connections, and of the requests on
    # its reused keep-alive connections, unread for 25 s, as a starved server does: a create
    # written on one times out (its row becomes unknown), and its row's lookups, on other
    # connections, are answered long before the create is read — 25 s is far past the 4 + 2 s
    # the tests' settings give a late create (one admin connection for both changes, kept alive:
    # admin calls on it are never held, a new one may be left unread)
    async with SimulatorAdmin(engine_stack.simulator_url, timeout_s=60) as sim:
        await sim.set_faults(p_connection_unread=0.25, connection_unread_s=25)
        sent_before = await sent_count(pool, campaign["id"])
        await asyncio.sleep(4)
        await sim.set_faults(p_connection_unread=None, connection_unread_s=None)
        sent_after = await sent_count(pool, campaign["id"])

    # Then, once every connection left unread has been read, every recipient has its final status
    # and none was sent twice: the creates read after their client gave up were dropped
    connections = await wait_read_late(engine_stack, tenant)
    print(f"\nsent when the fault began={sent_before} when it ended={sent_after} connections={connections}")
    assert connections.get("read_late", 0) > 0, (sent_before, sent_after, connections)
    await wait_final(engine_stack, pool, tenant, campaign["id"], 2_000, started)
    assert await unknown_phones(pool, campaign["id"])


async def wait_read_late(stack: Stack, tenant: TenantHandle) -> dict[str, int]:
    """Until the simulator has read every connection it left unread; its connection events."""
    deadline = time.monotonic() + 120
    while True:
        stats = await simulator_stats(stack, tenant.account_sid)
        connections: dict[str, int] = stats["connections"]
        if connections.get("read_late_done", 0) >= connections.get("read_late", 0):
            return connections
        assert time.monotonic() < deadline, connections
        await asyncio.sleep(0.5)
