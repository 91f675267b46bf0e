"""How late this sender's event loop wakes its timers, measured all the time, not only while it
sends paced messages.

A paced message sleeps until its slot; when the loop is busy (another tenant's unlimited campaign
fills it with responses and settlements), it wakes late, and a wake-up later than the chunk's late
tolerance loses its slot. The chunks' own timing reports stretch the dispatcher's tolerance, but
only after a chunk has lost slots: the first chunks of a small campaign that starts beside a busy
one would pay for the lesson. A probe timer samples the lateness every ``PERIOD_S``; every chunk
acknowledgement (the unlimited tenants' chunks are acknowledged to their dispatcher) carries the
tolerance those samples ask for, so the dispatcher has it before the next paced chunk is slotted.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from shared.throttle import cheapest_tolerance

PERIOD_S = 0.02
# About the last second of samples.
SAMPLES = 50


class WakeLateness:
    def __init__(self, base_tolerance_s: float, period_s: float = PERIOD_S, samples: int = SAMPLES) -> None:
        self._base_tolerance_s = base_tolerance_s
        self._period_s = period_s
        self._samples: deque[float] = deque(maxlen=samples)

    def add(self, lateness_s: float) -> None:
        self._samples.append(max(0.0, lateness_s))

    def tolerance_s(self) -> float:
        """The late tolerance that the last second's wake-ups ask for (the configured one when
        they ask for no more: see ``shared.throttle.cheapest_tolerance``)."""
        return cheapest_tolerance(list(self._samples), self._base_tolerance_s)

    async def run(self) -> None:
        while True:
            due = time.monotonic() + self._period_s
            await asyncio.sleep(self._period_s)
            self.add(time.monotonic() - due)
