"""Work the clock drives, in every segmenter replica at once (each step settles on one outcome
through a conditional UPDATE): scheduled campaigns start when their time comes; a running
campaign holds while its tenant's sending window is closed and is released when it opens."""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

import asyncpg

from services.segmenter import queries
from services.segmenter.campaigns import Lifecycle
from shared.db import AllTenants
from shared.logging import get_logger
from shared.sending_window import SendingWindow, is_open, next_opening

log = get_logger(__name__)

SENDING_WINDOW = "sending_window"
_PASSING = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def schedule_loop(lifecycle: Lifecycle, interval_s: float) -> None:
    while True:
        try:
            while len(await lifecycle.start_due()) > 0:
                pass
        except _PASSING as exc:
            log.warning("scheduled campaigns pass failed", error=repr(exc))
        await asyncio.sleep(interval_s)


async def hold_for_windows(pool: asyncpg.Pool, lifecycle: Lifecycle) -> None:
    """One pass: hold the running campaigns whose tenant's window is closed, release the others.

    A window in recipients' own zones does not hold the whole campaign: the sender keeps each
    recipient back until that recipient's window opens."""
    now = lifecycle.clock.now()
    # Running campaigns of every tenant with a sending window: a cross-tenant pass.
    for row in await AllTenants(pool).fetch(queries.WINDOWED_CAMPAIGNS, SENDING_WINDOW):
        data = row["sending_window"]
        window = SendingWindow.from_json(data) if data is not None else None
        tz = ZoneInfo(row["timezone"])
        if window is None or window.recipient_timezone or is_open(window, now, tz):
            if row["hold_reason"] == SENDING_WINDOW:
                await lifecycle.release(row["tenant_id"], row["id"], SENDING_WINDOW)
            continue
        await lifecycle.hold(row["tenant_id"], row["id"], SENDING_WINDOW, next_opening(window, now, tz))


async def window_loop(pool: asyncpg.Pool, lifecycle: Lifecycle, interval_s: float) -> None:
    while True:
        try:
            await hold_for_windows(pool, lifecycle)
        except _PASSING as exc:
            log.warning("sending window pass failed", error=repr(exc))
        await asyncio.sleep(interval_s)
