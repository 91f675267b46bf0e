"""smoke"""

from __future__ import annotations

import asyncpg
import pytest

from tests.e2e.engine.engine_helpers import seed_customers, simulator_stats, wait_settled
from tests.e2e.helpers import create_campaign, new_tenant
from tests.support import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_smoke(engine_stack: Stack, pool: asyncpg.Pool) -> None:
    tenant = await new_tenant(engine_stack, rate=None)
    await seed_customers(pool, tenant, 500)
    started = await create_campaign(engine_stack, tenant)
    counts = await wait_settled(pool, started["id"], 500, 60, engine_stack)
    print(counts)
    stats = await simulator_stats(engine_stack, tenant.account_sid)
    assert stats["accepted_total"] == 500
    assert not stats["duplicates"]
