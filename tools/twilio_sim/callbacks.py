"""Delivery of webhook requests by a fixed pool of workers over keep-alive sockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import NamedTuple

from .http_client import HttpResult, KeepAliveClient
from .webhooks import SignedRequest

log = logging.getLogger(__name__)


class Delivery(NamedTuple):
    request: SignedRequest
    account_sid: str
    # Deliveries queued before an admin reset must not touch the fresh counters.
    generation: int


class CallbackDispatcher:
    def __init__(
        self,
        client: KeepAliveClient,
        workers: int,
        on_done: Callable[[Delivery, bool], None],
    ) -> None:
        self._client = client
        self._worker_count = workers
        self._on_done = on_done
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._worker_count)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def enqueue(self, delivery: Delivery) -> None:
        self._queue.put_nowait(delivery)

    def discard_queued(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def send_now(self, request: SignedRequest) -> HttpResult:
        """Deliver outside the queue, for callers that need the response."""
        return await self._client.post(request.url, request.body, request.headers)

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            request = delivery.request
            try:
                result = await self._client.post(request.url, request.body, request.headers)
                ok = 200 <= result.status < 300
            except (OSError, TimeoutError, ValueError) as exc:
                log.debug("callback to %s failed: %s", request.url, exc)
                ok = False
            except Exception:
                # A worker must outlive any single bad delivery, or the pool shrinks silently.
                log.exception("callback to %s crashed", request.url)
                ok = False
            self._on_done(delivery, ok)
