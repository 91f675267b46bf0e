"""Bounded live progress streams: admission per API key and overall, one poll per campaign shared
by all its streams, a slower pace while a campaign does not move, and a maximum stream lifetime.

    stream -> ProgressHub.admit (429 past a cap) -> ProgressHub.follow -> _Feed (one per campaign)
                                                                             -> poll (one query set)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from services.tracker.progress import Progress
from shared.logging import get_logger
from shared.metrics import PROGRESS_POLLS, PROGRESS_STREAMS

log = get_logger(__name__)

# Loads a campaign's progress (None: the campaign is gone).
Poll = Callable[[UUID, UUID], Awaitable[Progress | None]]

# A draft does not move until it is started: its stream sends the draft's progress and ends, and
# tells the client to come back no sooner than this.
DRAFT_RECONNECT_MS = 30_000


class StreamLimitReached(Exception):
    def __init__(self, scope: str, retry_after_s: int) -> None:
        super().__init__(f"too many progress streams open {scope}")
        self.scope = scope
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class StreamLimits:
    per_key: int
    total: int
    max_lifetime_s: float
    interval_s: float
    idle_interval_s: float


class Ticket:
    """One admitted stream's place; released once (by the stream's end or its abandonment)."""

    def __init__(self, hub: ProgressHub, key: object) -> None:
        self._hub = hub
        self._key = key
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._hub._release(self._key)


class _Feed:
    """The latest progress of one campaign, polled by one task while anybody follows it."""

    def __init__(self, hub: ProgressHub, tenant_id: UUID, campaign_id: UUID) -> None:
        self._hub = hub
        self._ids = (tenant_id, campaign_id)
        self.followers = 0
        self.version = 0
        self.latest: Progress | None = None
        self.ended = False
        self._changed = asyncio.Condition()
        self.task = asyncio.create_task(self._run(), name=f"progress feed {campaign_id}")

    async def _run(self) -> None:
        try:
            while True:
                progress = await self._hub.poll(*self._ids)
                self._hub.polls += 1
                PROGRESS_POLLS.inc()
                await self._publish(progress, ended=progress is None or progress.final)
                if progress is None or progress.final:
                    return
                if progress.state == "draft":
                    return
                # A campaign that does not move by itself (paused, snapshotting) is polled slower.
                limits = self._hub.limits
                running = progress.state == "running"
                await asyncio.sleep(limits.interval_s if running else limits.idle_interval_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The streams end (a client reconnects) rather than hang on a feed that stopped.
            tenant_id, campaign_id = self._ids
            log.exception("progress poll failed", tenant_id=str(tenant_id), campaign_id=str(campaign_id))
            await self._publish(None, ended=True)
        finally:
            self._hub._feed_done(self._ids, self)

    async def _publish(self, progress: Progress | None, *, ended: bool) -> None:
        async with self._changed:
            self.latest = progress
            self.ended = ended
            self.version += 1
            self._changed.notify_all()

    async def wait_newer(self, seen: int, timeout_s: float) -> bool:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version > seen), timeout_s)
            return self.version > seen


class ProgressHub:
    def __init__(self, poll: Poll, limits: StreamLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.poll = poll
        self.limits = limits
        self._clock = clock
        self._per_key: dict[object, int] = {}
        self._total = 0
        self._feeds: dict[tuple[UUID, UUID], _Feed] = {}
        # Polls made since start: one per campaign and interval, whatever the number of streams.
        self.polls = 0

    @property
    def open_streams(self) -> int:
        return self._total

    def admit(self, key: object) -> Ticket:
        """A place for one more stream of ``key`` (an API key), or StreamLimitReached naming the cap."""
        retry_after = max(1, round(self.limits.idle_interval_s))
        if self._total >= self.limits.total:
            raise StreamLimitReached("on this server", retry_after)
        if self._per_key.get(key, 0) >= self.limits.per_key:
            raise StreamLimitReached("for this API key", retry_after)
        self._per_key[key] = self._per_key.get(key, 0) + 1
        self._total += 1
        PROGRESS_STREAMS.set(self._total)
        return Ticket(self, key)

    def _release(self, key: object) -> None:
        left = self._per_key.get(key, 0) - 1
        if left > 0:
            self._per_key[key] = left
        else:
            self._per_key.pop(key, None)
        self._total = max(0, self._total - 1)
        PROGRESS_STREAMS.set(self._total)

    def _feed_done(self, ids: tuple[UUID, UUID], feed: _Feed) -> None:
        if self._feeds.get(ids) is feed:
            del self._feeds[ids]

    async def follow(self, tenant_id: UUID, campaign_id: UUID) -> AsyncIterator[Progress]:
        """The campaign's progress at each poll until it ends (the last one is final), it is a draft,
        or the stream reaches its maximum lifetime."""
        ids = (tenant_id, campaign_id)
        feed = self._feeds.get(ids)
        if feed is None or feed.ended:
            feed = self._feeds[ids] = _Feed(self, tenant_id, campaign_id)
        feed.followers += 1
        deadline = self._clock() + self.limits.max_lifetime_s
        seen = 0
        try:
            while True:
                left = deadline - self._clock()
                if left <= 0 or not await feed.wait_newer(seen, left):
                    return
                seen = feed.version
                progress = feed.latest
                if progress is None:
                    return
                yield progress
                if feed.ended or progress.state == "draft":
                    return
        finally:
            feed.followers -= 1
            if feed.followers == 0 and not feed.task.done():
                feed.task.cancel()
                self._feed_done(ids, feed)

    async def close(self) -> None:
        feeds = list(self._feeds.values())
        for feed in feeds:
            feed.task.cancel()
        for feed in feeds:
            with contextlib.suppress(BaseException):
                await feed.task
