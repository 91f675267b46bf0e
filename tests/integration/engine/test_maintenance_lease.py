"""Maintenance leadership is a lease with a heartbeat: one holder at a time, taken over within
its duration when the holder stops renewing (frozen), and a holder that comes back stops leading."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from services.sender.leadership import LeadershipLost, Lease


async def test_one_holder_at_a_time_and_a_frozen_holder_is_replaced_when_its_lease_expires(
    pool: asyncpg.Pool,
) -> None:
    # Given two senders competing for a 1-second lease, the first holding it
    name = f"test.{uuid.uuid4().hex[:8]}"
    first, second = Lease(pool, name, duration_s=1.0), Lease(pool, name, duration_s=1.0)
    assert await first.acquire()

    # Then the second cannot take it while the first renews it
    for _ in range(4):
        await asyncio.sleep(first.heartbeat_s)
        assert await first.acquire()
        assert not await second.acquire()

    # When the first freezes (stops renewing)
    frozen_at = asyncio.get_running_loop().time()
    for _ in range(100):
        if await second.acquire():
            break
        await asyncio.sleep(0.05)
    took_over_s = asyncio.get_running_loop().time() - frozen_at

    # Then the second takes over once the lease expires, and the first, back, has lost it
    assert 0.6 <= took_over_s <= 2.0, took_over_s
    assert not await first.acquire()
    holder = await pool.fetchval("SELECT holder FROM leader_leases WHERE name = $1", name)
    assert holder == second.holder

    # And a release lets the other take it at once
    await second.release()
    assert await first.acquire()
    await first.release()


async def test_a_holder_whose_renewal_came_too_late_knows_it_may_no_longer_lead(pool: asyncpg.Pool) -> None:
    # Given a holder of a 1-second lease
    lease = Lease(pool, f"test.{uuid.uuid4().hex[:8]}", duration_s=1.0)
    assert await lease.acquire()
    lease.ensure_held()

    # When it does not renew in time (frozen, starved), even before anyone takes the lease over
    await asyncio.sleep(0.8)

    # Then its work stops: another holder may start once the lease expires
    assert not lease.held()
    with pytest.raises(LeadershipLost):
        lease.ensure_held()
    await lease.release()
