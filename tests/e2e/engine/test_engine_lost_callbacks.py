"""Status callbacks lost for good (Twilio never calls back, or drops a third of its callbacks):
maintenance re-checks the rows left at ``sent``/``delivered`` with Twilio's Message fetch, and
every recipient still ends with its final delivery status, nothing sent twice. Prints recipients,
final states, duplicates and the time to complete."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tests.e2e.engine.engine_helpers import seed_customers, set_faults, simulator_stats
from tests.e2e.engine.test_engine_nothing_lost import wait_final
from tests.e2e.helpers import create_campaign, new_tenant
from tests.support import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Rows left at sent/delivered are re-checked after two seconds.
STACK_ENV = {"WCE_STATUS_RECHECK_AFTER_S": "2"}


async def test_every_recipient_gets_its_final_status_when_status_callbacks_are_lost(
    engine_stack: Stack, pool: asyncpg.Pool
) -> None:
    # Given two tenants: Twilio never calls the first back, and drops a third of the second's callbacks
    silent = await new_tenant(engine_stack, rate=None)
    lossy = await new_tenant(engine_stack, rate=None)
    await set_faults(engine_stack, silent.account_sid, callbacks_enabled=False)
    await set_faults(engine_stack, lossy.account_sid, p_drop_callback=0.33)
    await seed_customers(pool, silent, 300, start=600_000)
    await seed_customers(pool, lossy, 300, start=610_000)

    # When each runs a campaign
    started = time.monotonic()
    silent_campaign = await create_campaign(engine_stack, silent)
    lossy_campaign = await create_campaign(engine_stack, lossy)

    # Then every recipient of both is delivered or read, none sent twice
    await asyncio.gather(
        wait_final(engine_stack, pool, silent, silent_campaign["id"], 300, started),
        wait_final(engine_stack, pool, lossy, lossy_campaign["id"], 300, started),
    )
    silent_stats = await simulator_stats(engine_stack, silent.account_sid)
    lossy_stats = await simulator_stats(engine_stack, lossy.account_sid)
    assert silent_stats["callbacks_sent"] == 0, silent_stats
    assert lossy_stats["callbacks_dropped"] > 0, lossy_stats
