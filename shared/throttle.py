"""Slot arithmetic for a tenant's send rate: pure functions and a small clock, no I/O.

Every message gets a start slot. Slots of one tenant are spaced ``(1 + margin) / rate`` seconds
apart, so a window of one second holds at most ``floor(rate / (1 + margin)) + 1`` starts; the
margin absorbs the sender's timer and network jitter, which is why the limit holds as Twilio sees
it and not only as the sender schedules it. The dispatcher hands out slots at most ``lead_s``
ahead of now, so a pause or a rate change takes effect within a lead plus one chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A chunk's slots span at most this long, so a paused campaign stops within a fraction of a second.
MAX_CHUNK_SPAN_S = 0.25


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

    def start(self, now: float, *, lead_s: float, span_s: float) -> None:
        """Begin after every slot a previous active dispatcher may have handed out: those lie
        at most a lead plus one chunk beyond the moment it stopped."""
        self.next_slot_at = max(self.next_slot_at, now + lead_s + span_s)
        self.started = True

    def wait_s(self, now: float, lead_s: float) -> float:
        """How long to wait before the next chunk may be handed out."""
        return max(0.0, self.next_slot_at - lead_s - now)

    def allocate(self, count: int, interval_s: float, now: float) -> float:
        """Reserve ``count`` consecutive slots; return the first one. Slots never lie in the past,
        and never closer than ``interval_s`` to the previous chunk's last slot."""
        first = max(self.next_slot_at, now)
        self.next_slot_at = first + count * interval_s
        return first


def is_late(slot_at: float | None, now: float, tolerance_s: float) -> bool:
    """A message whose slot passed more than ``tolerance_s`` ago must not start: starting it
    now could put more than the rate into one second. Unlimited (no slot) is never late."""
    return slot_at is not None and now - slot_at > tolerance_s
