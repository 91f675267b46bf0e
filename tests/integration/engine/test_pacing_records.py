"""The dispatcher's view of tenants' back-off records on the real database: every tenant's
record still in force comes from one read, however many tenants ask."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from services.dispatcher.scheduler import PacingRecords

pytestmark = pytest.mark.asyncio(loop_scope="session")


class CountingPool:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.queries = 0

    def acquire(self) -> Any:
        """Each read takes a connection for its transaction (it runs as the cross-tenant role)."""
        self.queries += 1
        return self._pool.acquire()


async def tenant_with_pacing(
    pool: asyncpg.Pool, factor: float, *, changed_s_ago: float, held_for_s: float | None = None
) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from)"
        " VALUES ($1, 't', $2, 'x', '+14155238886')",
        tenant_id,
        "AC" + uuid.uuid4().hex,
    )
    await pool.execute(
        "INSERT INTO tenant_pacing (tenant_id, factor, changed_at, hold_until)"
        " VALUES ($1, $2, now() - make_interval(secs => $3),"
        " now() + make_interval(secs => $4::float8))",
        tenant_id,
        factor,
        changed_s_ago,
        held_for_s,
    )
    return tenant_id


async def test_every_tenants_back_off_in_force_comes_from_one_read(pool: asyncpg.Pool) -> None:
    # Given a tenant backed off a second ago, one backed off long ago (recovered since), one
    # backed off long ago and held by a Retry-After still, and one that never backed off
    recent = await tenant_with_pacing(pool, 0.5, changed_s_ago=1)
    recovered = await tenant_with_pacing(pool, 0.5, changed_s_ago=3600)
    held = await tenant_with_pacing(pool, 0.5, changed_s_ago=3600, held_for_s=30)
    never = uuid.uuid4()
    counting = CountingPool(pool)
    records = PacingRecords(counting, recovery_per_s=0.02)  # type: ignore[arg-type]

    # When the dispatcher asks for all four at once
    recent_record, recovered_record, held_record, never_record = await asyncio.gather(
        *(records.current(tenant) for tenant in (recent, recovered, held, never))
    )

    # Then one query answered them all: the records in force, and none for the others
    assert counting.queries == 1
    assert recent_record is not None and recent_record.factor == 0.5
    assert held_record is not None and held_record.hold_until is not None
    assert recovered_record is None and never_record is None
    # And asking again within the re-read interval costs nothing
    assert await records.current(recent) == recent_record
    assert counting.queries == 1
