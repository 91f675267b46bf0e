"""Row work of bulk requests (phone normalisation, row shaping) in a small worker pool, so the
event loop that serves every other tenant's requests and the broker consumers keeps its turn.
A few rows (one booking event, a small upsert) stay on the loop: they would cost more to hand
over than to do, and must not wait behind another tenant's bulk request for a worker."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Two workers: bulk work of two tenants proceeds at once; a third waits for a worker rather than
# adding to the contention for the interpreter that the event loop shares.
_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bulk-rows")

# Rows handled on the event loop; more go to the workers (a phone number takes about 30 µs).
ON_LOOP_AT_MOST = 100


async def off_loop(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(*args, **kwargs)`` in the worker pool; the loop serves others meanwhile."""
    call = functools.partial(func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_WORKERS, call)


async def row_work(rows: int, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(*args, **kwargs)`` over ``rows`` rows: on the loop for a few, else in the worker pool."""
    if rows <= ON_LOOP_AT_MOST:
        return func(*args, **kwargs)
    return await off_loop(func, *args, **kwargs)
