"""Slot arithmetic for a tenant's send rate: pure functions and a small clock, no I/O.

Every message gets a start slot. Slots of one tenant are spaced ``(1 + margin) / rate`` seconds
apart, so a window of one second holds at most ``floor(rate / (1 + margin)) + 1`` starts; the
margin absorbs the sender's timer and network jitter, which is why the limit holds as Twilio sees
it and not only as the sender schedules it. The dispatcher hands out slots at most ``lead_s``
ahead of now, so a pause or a rate change takes effect within a lead plus one chunk.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

# A chunk's slots span at most this long, so a paused campaign stops within a fraction of a second.
MAX_CHUNK_SPAN_S = 0.25
# The slot spacing margin grows by as much as the late tolerance (a fraction of the rate per
# second of tolerance; see ``AdaptiveTiming.margin``).
MARGIN_PER_TOLERANCE_S = 1.0


def slot_interval(rate_per_second: float, margin: float) -> float:
    if rate_per_second <= 0:
        raise ValueError("rate must be positive")
    return (1.0 + margin) / rate_per_second


def chunk_length(interval_s: float | None, chunk_size: int, max_span_s: float = MAX_CHUNK_SPAN_S) -> int:
    """How many recipients one chunk carries: ``chunk_size``, fewer when their slots would span
    more than ``max_span_s``; unlimited tenants (``interval_s`` None) always get ``chunk_size``."""
    if chunk_size < 1:
        raise ValueError("chunk size must be at least 1")
    if not interval_s:
        return chunk_size
    return max(1, min(chunk_size, math.floor(max_span_s / interval_s) + 1))


def max_starts_per_window(interval_s: float, window_s: float = 1.0, jitter_s: float = 0.0) -> int:
    """The most slot starts that can land in any window of ``window_s`` when each start may move
    up to ``jitter_s`` later than its slot."""
    return math.floor((window_s + jitter_s) / interval_s + 1e-9) + 1


@dataclass
class SlotClock:
    """The next free slot of one tenant on one dispatcher (the single active consumer)."""

    next_slot_at: float = 0.0
    started: bool = False
    # The late tolerance of the last chunk's slots.
    tolerance_s: float = 0.0

    def start(self, now: float, *, lead_s: float, span_s: float) -> None:
        """Begin after every slot a previous active dispatcher may have handed out: those lie
        at most a lead plus one chunk beyond the moment it stopped."""
        self.next_slot_at = max(self.next_slot_at, now + lead_s + span_s)
        self.started = True

    def wait_s(self, now: float, lead_s: float) -> float:
        """How long to wait before the next chunk may be handed out."""
        return max(0.0, self.next_slot_at - lead_s - now)

    def allocate(self, count: int, interval_s: float, now: float, tolerance_s: float = 0.0) -> float:
        """Reserve ``count`` consecutive slots whose messages may start up to ``tolerance_s``
        late; return the first one. Slots never lie in the past, and never closer than
        ``interval_s`` to the previous chunk's last slot. When the tolerance shrinks, the slots
        start later by as much: the previous chunk's messages may still start that late, and the
        new, denser slots must not crowd in behind them."""
        gap = max(0.0, self.tolerance_s - tolerance_s)
        first = max(self.next_slot_at + gap, now)
        self.next_slot_at = first + count * interval_s
        self.tolerance_s = tolerance_s
        return first


def cheapest_tolerance(lateness: Sequence[float], current_s: float) -> float:
    """The late tolerance that would have cost these wake-ups (how late each message woke for its
    slot) the least throughput: a wake-up later than the tolerance loses its slot (one slot in
    ``len(lateness)``), and every second of tolerance above ``current_s`` widens the spacing by
    ``MARGIN_PER_TOLERANCE_S`` of the rate. A busy machine's usual lateness is absorbed, even when
    it is only the slowest tenth of the wake-ups; a stray outlier stretches nothing. The fewer the
    wake-ups, the more one outlier weighs: senders decide on a pool of their recent ones
    (``services.sender.wake_lateness``), not on one chunk's."""
    if not lateness:
        return current_s
    ordered = sorted(lateness)
    count = len(ordered)
    best_s = current_s
    best_cost = (count - bisect_right(ordered, current_s)) / count
    for candidate in ordered:
        if candidate <= current_s:
            continue
        lost = count - bisect_right(ordered, candidate)
        cost = MARGIN_PER_TOLERANCE_S * (candidate - current_s) + lost / count
        if cost < best_cost:
            best_s, best_cost = candidate, cost
    return best_s


def is_late(slot_at: float | None, now: float, tolerance_s: float) -> bool:
    """A message whose slot passed more than ``tolerance_s`` ago must not start: starting it
    now could put more than the rate into one second. Unlimited (no slot) is never late."""
    return slot_at is not None and now - slot_at > tolerance_s


@dataclass
class AdaptiveTiming:
    """How far ahead a dispatcher hands out slots (the lead) and how late after its slot a message
    may still start (the tolerance), following what senders report.

    On a quiet machine a chunk reaches its sender well within the configured lead and every
    message wakes within a few milliseconds of its slot. On a busy one both stretch: chunks
    arrive after their first slots, messages wake after theirs, and every slot they miss is
    lost. Rather than losing them (and sending the messages back through the dispatcher, again
    and again), the lead grows to the pipeline's observed latency and the tolerance to the
    observed wake-up lateness. The rate still holds where Twilio counts it: the slot spacing
    grows with the tolerance (``margin``), so a start up to the tolerance late still puts no more
    than the rate into any second (``max_starts_per_window``). Both return to their configured
    values with a half-life once the reports stop.
    """

    base_lead_s: float
    base_tolerance_s: float
    max_lead_s: float = 1.0
    max_tolerance_s: float = 0.1
    half_life_s: float = 10.0
    # Head-room of the lead over the latency observed. The tolerance gets none: every
    # millisecond of it widens the spacing (costs throughput) for as long as it lasts, and a
    # message later than it loses one slot, not the chunk.
    headroom: float = 1.5
    _lead_s: float = field(init=False)
    _tolerance_s: float = field(init=False)
    _at: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._lead_s = self.base_lead_s
        self._tolerance_s = self.base_tolerance_s

    def lead_s(self, now: float) -> float:
        self._decay(now)
        return self._lead_s

    def tolerance_s(self, now: float) -> float:
        self._decay(now)
        return self._tolerance_s

    def margin(self, base_margin: float, now: float) -> float:
        """The slot spacing margin for the current tolerance. A start may come up to the
        tolerance late, so the margin grows by the tolerance's growth. No more is needed for the
        load that makes senders wake late: a paced create is written by its slot's tolerance or not
        at all (the HTTP client checks the deadline just before the write), so that load cannot
        move it later on its way to being counted. The configured margin's distance above the
        configured tolerance stays the allowance for the network's jitter."""
        return base_margin + MARGIN_PER_TOLERANCE_S * (self.tolerance_s(now) - self.base_tolerance_s)

    def observe(self, now: float, *, arrived_late_s: float, woke_late_s: float) -> None:
        """A sender's report of one chunk: how long after its first slot the chunk was ready to
        send (0 when in time), and how late its messages woke for their slots (a high quantile)."""
        self._decay(now)
        if arrived_late_s > 0:
            wanted = (self._lead_s + arrived_late_s) * self.headroom
            self._lead_s = min(self.max_lead_s, max(self._lead_s, wanted))
        if woke_late_s > 0:
            wanted = woke_late_s
            self._tolerance_s = min(self.max_tolerance_s, max(self._tolerance_s, wanted))

    def _decay(self, now: float) -> None:
        elapsed = now - self._at
        self._at = now
        if elapsed <= 0:
            return
        keep = 0.5 ** (elapsed / self.half_life_s)
        self._lead_s = self.base_lead_s + (self._lead_s - self.base_lead_s) * keep
        self._tolerance_s = self.base_tolerance_s + (self._tolerance_s - self.base_tolerance_s) * keep
