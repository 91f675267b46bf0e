"""Running a job at a fixed interval in the background, surviving its failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from shared.logging import get_logger

log = get_logger(__name__)


async def run_every(name: str, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
    """Call ``job`` every ``interval_s`` until cancelled; a failing run is logged and the next
    one comes on time (the usual cause is a database or broker restart)."""
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("periodic job failed", job=name, error=repr(exc))
        await asyncio.sleep(interval_s)
