"""Row work of bulk requests (phone normalisation, row shaping) in a small worker pool, so the
event loop that serves every other tenant's requests and the broker consumers keeps its turn."""

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


async def off_loop(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(*args, **kwargs)`` in the worker pool; the loop serves others meanwhile."""
    call = functools.partial(func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_WORKERS, call)
