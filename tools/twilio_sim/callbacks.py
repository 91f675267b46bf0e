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
    # Connection overrides of the callback URL: retries left and on what they apply.
    retries: int = 0
    retry_policy: frozenset[str] = frozenset()
    retried: int = 0


# Retry n waits this long (the delays Twilio uses are not documented; these cover a restart).
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0)
MAX_RETRIES = len(RETRY_DELAYS_S)
RETRY_POLICIES = frozenset({"all", "4xx", "5xx", "ct", "rt"})


def connection_overrides(url: str) -> tuple[int, frozenset[str]]:
    """Retries (``rc``, at most 5) and policy (``rp``) asked for in a webhook URL's fragment, e.g.
    ``#rc=3&rp=all``; no retries unless asked, as with Twilio. An unknown policy asks for nothing
    (Twilio logs error 11243)."""
    _, _, fragment = url.partition("#")
    if not fragment:
        return 0, frozenset()
    overrides = dict(part.partition("=")[::2] for part in fragment.split("&"))
    try:
        retries = max(0, min(MAX_RETRIES, int(overrides.get("rc", "0"))))
    except ValueError:
        return 0, frozenset()
    policy = frozenset(overrides.get("rp", "ct").split(","))
    if not policy <= RETRY_POLICIES:
        return 0, frozenset()
    return retries, policy


def should_retry(policy: frozenset[str], status: int | None, timed_out: bool) -> bool:
    """``status`` None: no response (connection refused or reset, or a timeout)."""
    if "all" in policy:
        return status is None or not 200 <= status < 300
    if status is None:
        return ("rt" if timed_out else "ct") in policy
    return ("5xx" in policy and 500 <= status < 600) or ("4xx" in policy and 400 <= status < 500)


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
            status: int | None = None
            timed_out = False
            failure = ""
            try:
                result = await self._client.post(request.url, request.body, request.headers)
                status = result.status
                ok = 200 <= result.status < 300
                failure = f"answered {result.status}"
            except (OSError, TimeoutError, ValueError) as exc:
                timed_out = isinstance(exc, TimeoutError)
                ok = False
                failure = f"{type(exc).__name__}: {exc}"
            except Exception:
                # A worker must outlive any single bad delivery, or the pool shrinks silently.
                log.exception("callback to %s crashed", request.url)
                ok = False
            if not ok and delivery.retries and should_retry(delivery.retry_policy, status, timed_out):
                log.info("callback to %s failed (%s); retried later", request.url, failure)
                self._retry_later(delivery)
                continue
            if not ok and failure:
                # A callback lost for good: the engine learns the outcome by other means or never.
                log.warning("callback to %s failed (%s); not sent again", request.url, failure)
            self._on_done(delivery, ok)

    def _retry_later(self, delivery: Delivery) -> None:
        delay = RETRY_DELAYS_S[min(delivery.retried, MAX_RETRIES - 1)]
        again = delivery._replace(retries=delivery.retries - 1, retried=delivery.retried + 1)
        asyncio.get_running_loop().call_later(delay, self._queue.put_nowait, again)
