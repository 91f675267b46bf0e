"""How a sender shares its Twilio calls: among tenants, and within a chunk's slots.

``CallSlots`` is the sender's capacity of concurrent Twilio calls. A freed call goes first to a
message with a slot (a rate-limited tenant's message has a time to keep; an unlimited tenant's
has none), then to the waiting tenant with the fewest calls in flight, so a tenant with a
backlog of thousands gets no more of the sender than one with a handful. Messages without a
slot never take the last ``reserved`` calls: an unlimited tenant's backlog would otherwise hold
every call, and a message with a slot would wait for one to end, past its slot.

``SlotBook`` hands out a chunk's slots to its messages in order of time. A message that comes
late (a busy machine, a slow claim) takes the next slot that has not passed instead of going
back through the queue; only slots that passed unused are lost, and only messages left without
a slot at the end of the chunk are re-slotted. Every message still starts within the late
tolerance after a slot of its own, so no one-second window holds more than the rate.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Hashable

from shared.throttle import is_late


class CallSlots:
    def __init__(self, capacity: int, reserved: int = 0) -> None:
        self.capacity = capacity
        # Calls only messages with a slot may take; at least one call is left to the others.
        self.reserved = max(0, min(reserved, capacity - 1))
        self._free = capacity
        self._in_flight: Counter[Hashable] = Counter()
        self._timed: deque[tuple[Hashable, asyncio.Future[None]]] = deque()
        self._untimed: dict[Hashable, deque[asyncio.Future[None]]] = {}

    def in_flight(self, tenant: Hashable) -> int:
        return self._in_flight[tenant]

    @property
    def waiting(self) -> int:
        return len(self._timed) + sum(len(waiters) for waiters in self._untimed.values())

    async def acquire(self, tenant: Hashable, *, timed: bool) -> None:
        if self._may_take_now(timed):
            self._free -= 1
            self._in_flight[tenant] += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if timed:
            self._timed.append((tenant, future))
        else:
            self._untimed.setdefault(tenant, deque()).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted just as it was cancelled: hand the call on.
                self.release(tenant)
            else:
                self._forget(tenant, future, timed)
            raise

    def _may_take_now(self, timed: bool) -> bool:
        """Whether a call is free for this message without passing anyone waiting. Messages
        without a slot may be left waiting while the reserved calls are free."""
        if timed:
            return self._free > 0 and not self._timed
        return self._free > self.reserved and not self.waiting

    def release(self, tenant: Hashable) -> None:
        self._in_flight[tenant] -= 1
        if self._in_flight[tenant] <= 0:
            del self._in_flight[tenant]
        self._free += 1
        self._grant()

    def _grant(self) -> None:
        while self._free > 0:
            chosen = self._next_waiter()
            if chosen is None:
                return
            tenant, future = chosen
            if future.done():
                continue
            self._free -= 1
            self._in_flight[tenant] += 1
            future.set_result(None)

    def _next_waiter(self) -> tuple[Hashable, asyncio.Future[None]] | None:
        if self._timed:
            return self._timed.popleft()
        if not self._untimed or self._free <= self.reserved:
            return None
        tenant = min(self._untimed, key=lambda t: self._in_flight[t])
        waiters = self._untimed[tenant]
        future = waiters.popleft()
        if not waiters:
            del self._untimed[tenant]
        return tenant, future

    def _forget(self, tenant: Hashable, future: asyncio.Future[None], timed: bool) -> None:
        if timed:
            try:
                self._timed.remove((tenant, future))
            except ValueError:
                pass
            return
        waiters = self._untimed.get(tenant)
        if waiters is not None:
            try:
                waiters.remove(future)
            except ValueError:
                pass
            if not waiters:
                del self._untimed[tenant]


class SlotBook:
    """The slots of one chunk: ``first + i * interval`` for each of its ``count`` messages."""

    def __init__(self, first: float, interval: float, count: int, tolerance: float) -> None:
        self._first = first
        self._interval = interval
        self._count = count
        self._tolerance = tolerance
        self._next = 0
        self.lost = 0

    @property
    def tolerance(self) -> float:
        return self._tolerance

    def take(self, now: float) -> float | None:
        """The earliest slot not handed out that a message starting at ``now`` may still use (at
        most ``tolerance`` past), or None when the chunk has none left."""
        while self._next < self._count and not self.usable(self._slot(self._next), now):
            self._next += 1
            self.lost += 1
        if self._next >= self._count:
            return None
        slot = self._slot(self._next)
        self._next += 1
        return slot

    def usable(self, slot: float, now: float) -> bool:
        return not is_late(slot, now, self._tolerance)

    def _slot(self, index: int) -> float:
        return self._first + index * self._interval
