"""Rate, fairness and pause as Twilio (the simulator) sees them, with two dispatchers running:
the rate holds in every one-second window, changes while a campaign runs, is not multiplied by
dispatcher replicas, and holds where Twilio counts on a machine whose cores are all kept busy; a
small tenant is not held back by a big one; pause stops calls within a second and resume finishes
without a duplicate; cancel leaves the rest cancelled."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx
import pytest

from shared.cpu_slice import slice_s
from shared.settings import Settings
from tests.e2e.engine.engine_helpers import (
    api,
    seed_customers,
    sent_count,
    simulator_stats,
    wait_sent,
    wait_settled,
)
from tests.e2e.helpers import create_campaign, new_tenant, wait_for_state
from tests.support import OPERATOR_TOKEN, Stack

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timing]

DISPATCHERS = 2
# Slots 2% apart instead of the default 1.5%: 20 ms instead of 15 ms of start-to-arrival jitter
# before a window can hold one message too many, for a test machine shared with other work.
STACK_ENV = {"WCE_THROTTLE_MARGIN": "0.02"}


async def set_rate(stack: Stack, tenant_id: str, rate: int) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        response = await client.patch(
            f"/v1/operator/tenants/{tenant_id}",
            json={"rate_per_second": rate},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
    response.raise_for_status()


async def test_at_80_per_second_no_second_holds_more_than_80_and_the_mean_is_at_least_76(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant at 80 msgs/s (two dispatchers and two senders running)
    tenant = await new_tenant(engine_stack, rate=80)
    await seed_customers(pool, tenant, 960)

    # When a 960-recipient campaign runs
    started = await create_campaign(engine_stack, tenant)
    await wait_settled(pool, started["id"], 960, timeout_s=60, stack=engine_stack)

    # Then the simulator never saw more than 80 in any one-second window, and about 80 on average
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    mean = (stats["accepted_total"] - 1) / (stats["last_at"] - stats["first_at"])
    print(f"\nmax in any second {stats['max_in_any_second']}, mean {mean:.1f}/s, {stats['per_second']}")
    assert stats["accepted_total"] == 960
    assert stats["max_in_any_second"] <= 80
    assert mean >= 76


def busy_processes() -> list[subprocess.Popen[bytes]]:
    """A process spinning on each core of the machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]


async def test_beside_busy_processes_no_second_at_the_receiver_holds_more_than_the_rate(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a tenant at 200 msgs/s and a process spinning on every core of the machine
    rate, total = 200, 3000
    tenant = await new_tenant(engine_stack, rate=rate)
    await seed_customers(pool, tenant, total, start=600_000)
    burners = busy_processes()
    try:
        # When a 3,000-recipient campaign runs beside them
        started_at = time.time()
        started = await create_campaign(engine_stack, tenant)
        await wait_sent(pool, started["id"], total, timeout_s=240)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()

    # Then no one-second window of the creates' arrival times at the simulator (stamped by the
    # kernel, so a starved simulator does not bunch them) holds more than the rate, nobody got two
    # messages, and the campaign took at most 4x its time at the rate (the benchmark holds the
    # 1.5x-of-quiet target; this bound only catches a collapse)
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    took = stats["last_at"] - started_at
    mean = (stats["accepted_total"] - 1) / (stats["last_at"] - stats["first_at"])
    print(f"\nmax in any second {stats['max_in_any_second']}, mean {mean:.1f}/s, last send {took:.1f}s")
    assert stats["accepted_total"] == total and not stats["duplicates"]
    assert stats["max_in_any_second"] <= rate
    assert took <= 4 * total / rate
    await wait_settled(pool, started["id"], total, timeout_s=60, stack=engine_stack)


async def test_each_senders_event_loop_runs_with_the_short_cpu_slice_it_asked_for(
    engine_stack: Stack,
) -> None:
    # Given a kernel that keeps a slice per thread (Linux 6.12 on)
    if not slice_s():
        pytest.skip("this kernel has no per-thread slices (Linux < 6.12)")

    # Then every sender's event loop (its main thread) runs with the configured slice, shorter
    # than the kernel's default that the other services keep
    asked = Settings().sender_cpu_slice_s
    senders = [process for name, process in engine_stack.processes.items() if name.startswith("sender")]
    assert senders
    for sender in senders:
        assert slice_s(sender.pid) == pytest.approx(asked)
    tracker_slice = slice_s(engine_stack.processes["tracker"].pid)
    assert tracker_slice is not None and tracker_slice > asked


async def test_a_rate_change_mid_campaign_shows_in_the_per_second_counts(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a campaign sending at 80/s
    tenant = await new_tenant(engine_stack, rate=80)
    await seed_customers(pool, tenant, 900, start=10_000)
    started = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, started["id"], 300)

    # When the rate is lowered to 30/s
    await set_rate(engine_stack, tenant.id, 30)
    changed_at = time.time()
    await wait_sent(pool, started["id"], 600)

    # Then from 2 s after the change no second holds more than 30; before it, about 80 did
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    per_second = {int(second): n for second, n in stats["per_second"].items()}
    before = [n for second, n in per_second.items() if second < int(changed_at) - 1][1:]
    after = [n for second, n in per_second.items() if second >= int(changed_at) + 2]
    print(f"\nbefore {before}\nafter {after}")
    assert max(before) >= 70 and max(before) <= 80
    assert after and max(after) <= 30
    await api(engine_stack, tenant, "POST", f"/v1/campaigns/{started['id']}/cancel")


async def test_a_small_campaign_of_one_tenant_completes_within_seconds_while_another_sends_a_big_one(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given tenant A sending 10,000 messages without a rate limit
    big = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, big, 10_000, start=100_000)
    big_campaign = await create_campaign(engine_stack, big)
    await wait_sent(pool, big_campaign["id"], 2000)

    # When tenant B starts a 100-recipient campaign
    small = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, small, 100, start=200_000)
    started_at = time.monotonic()
    small_campaign = await create_campaign(engine_stack, small)
    await wait_settled(pool, small_campaign["id"], 100, timeout_s=30, stack=engine_stack)
    took = time.monotonic() - started_at

    # Then B is done within seconds, while A is still sending
    a_sent = await sent_count(pool, big_campaign["id"])
    print(f"\nB took {took:.1f}s while A had {a_sent} of 10000 sent")
    assert took < 8
    assert a_sent < 10_000

    # And A, cancelled there rather than waited for (the rest of its sending is not this test's
    # subject, and the module runs with no other test beside it), reached nobody twice and left
    # no recipient unaccounted for
    response = await api(engine_stack, big, "POST", f"/v1/campaigns/{big_campaign['id']}/cancel")
    # (409 when A completed meanwhile)
    assert response.status_code in (200, 409), response.text
    counts = await wait_settled(pool, big_campaign["id"], 10_000, timeout_s=120, stack=engine_stack)
    stats = await simulator_stats(engine_stack, big.account_sid)
    assert not stats["duplicates"]
    assert counts.get("cancelled", 0) + stats["accepted_total"] == 10_000, counts


async def test_after_pause_no_call_starts_more_than_a_second_later_and_resume_completes_without_duplicates(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a campaign sending at 60/s
    tenant = await new_tenant(engine_stack, rate=60)
    await seed_customers(pool, tenant, 450, start=300_000)
    started = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, started["id"], 150)

    # When it is paused
    paused_at = time.time()
    response = await api(engine_stack, tenant, "POST", f"/v1/campaigns/{started['id']}/pause")
    assert response.status_code == 200, response.text
    await asyncio.sleep(3)

    # Then no request for it reached Twilio more than a second after the pause
    stats = await simulator_stats(engine_stack, tenant.account_sid, include_requests=True)
    last = max(request["at"] for request in stats["requests"])
    print(f"\nlast request {last - paused_at:+.3f}s after the pause; {stats['accepted_total']} sent")
    assert last <= paused_at + 1.0
    assert stats["accepted_total"] < 450

    # When it is resumed / Then it completes and nobody got two messages
    response = await api(engine_stack, tenant, "POST", f"/v1/campaigns/{started['id']}/resume")
    assert response.status_code == 200, response.text
    await wait_settled(pool, started["id"], 450, timeout_s=90, stack=engine_stack)
    await wait_for_state(engine_stack, tenant, started["id"], {"completed"}, timeout_s=30)
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 450 and not stats["duplicates"]


async def test_cancel_stops_calls_and_marks_what_is_left_cancelled(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a campaign sending at 60/s
    tenant = await new_tenant(engine_stack, rate=60)
    await seed_customers(pool, tenant, 600, start=400_000)
    started = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, started["id"], 100)

    # When it is cancelled
    cancelled_at = time.time()
    response = await api(engine_stack, tenant, "POST", f"/v1/campaigns/{started['id']}/cancel")
    assert response.status_code == 200, response.text
    await asyncio.sleep(3)

    # Then calls stopped within a second and every recipient left says cancelled
    stats = await simulator_stats(engine_stack, tenant.account_sid, include_requests=True)
    assert max(request["at"] for request in stats["requests"]) <= cancelled_at + 1.0
    counts = await wait_settled(pool, started["id"], 600, timeout_s=30, stack=engine_stack)
    assert counts.get("cancelled", 0) + stats["accepted_total"] == 600, counts
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM recipients"
            " WHERE campaign_id = $1 AND state = 'cancelled' AND twilio_sid IS NOT NULL",
            uuid.UUID(started["id"]),
        )
        == 0
    )


async def test_when_the_active_dispatcher_dies_the_other_takes_over_within_the_rate(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given a campaign at 80/s with two dispatchers
    tenant = await new_tenant(engine_stack, rate=80)
    await seed_customers(pool, tenant, 960, start=500_000)
    started = await create_campaign(engine_stack, tenant)
    await wait_sent(pool, started["id"], 250)

    # When both dispatchers are killed one after the other (whichever is active dies)
    for name in ("dispatcher0", "dispatcher1"):
        process = engine_stack.processes[name]
        process.kill()
        process.restart()
        await asyncio.to_thread(process.wait_healthy, 60)
        await asyncio.sleep(2)

    # Then the campaign completes, never above the rate, nobody twice
    await wait_settled(pool, started["id"], 960, timeout_s=120, stack=engine_stack)
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 960 and not stats["duplicates"]
    assert stats["max_in_any_second"] <= 80
