"""Concurrent loads of one key share one call: the first caller runs it, the others await its result.

A burst of webhooks for one tenant (a new campaign's first callbacks) must cost one database
query, not one each. Waiters are shielded, so one waiter's cancellation does not cancel the load
the others wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    def running(self, key: K) -> bool:
        return key in self._running

    async def run(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        pending = self._running.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            value = await load()
            future.set_result(value)
            return value
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            # Waiters get the exception; nobody may be waiting, which must not be logged as lost.
            future.exception()
            raise
        finally:
            del self._running[key]
