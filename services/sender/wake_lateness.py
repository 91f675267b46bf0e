"""How late this sender wakes for its timers, and the late tolerance that lateness asks for.

A paced message sleeps until its slot; when the loop or the machine is busy it wakes late, and a
wake-up later than the chunk's late tolerance loses its slot. The dispatcher's tolerance follows
what this sender reports (``shared.throttle.AdaptiveTiming``); two pools of samples feed it:

- **The paced wake-ups** (``PacedLateness``): how late every paced message of every tenant woke
  for its slot, over the last ``PACED_SAMPLES`` (at most ``PACED_MAX_AGE_S`` old). Each paced
  chunk's timing report carries the tolerance they ask for. One chunk's 20 or so wake-ups are
  too few to decide on: one stray wake-up is 5 % of them, and would buy up to 50 ms of
  tolerance, that is 5 % of the rate, for as long as the dispatcher remembers it. The pool
  decides as the campaign as a whole pays: a slot lost per wake-up beyond the tolerance against
  the spacing every extra millisecond of tolerance costs every message.
- **A probe timer** (``WakeLateness``): samples the loop's lateness every ``PERIOD_S``, also while
  this sender sends nothing paced. Every chunk acknowledgement (the unlimited tenants' chunks are
  acknowledged to their dispatcher) carries the tolerance those samples ask for, so the first
  chunks of a small campaign that starts beside a busy one do not pay for the lesson.

Both ask for the tolerance measured from the configured one (``shared.throttle.cheapest_tolerance``),
never from the tolerance currently in force: a report that asked for at least the current value
would keep a tolerance that a passing stall stretched from ever coming down while chunks run.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from shared.throttle import cheapest_tolerance

PERIOD_S = 0.02
# About the last second of the probe's samples.
SAMPLES = 50
# About the last second of a busy sender's paced wake-ups (a stall of the machine comes with
# others around it: the last second's say more about the next chunks than a longer past would);
# samples older than the dispatcher's half-life of a stretched tolerance say nothing about now.
PACED_SAMPLES = 200
PACED_MAX_AGE_S = 10.0


class LatenessSamples:
    """The last ``samples`` wake-up lateness samples (none older than ``max_age_s``)."""

    def __init__(self, base_tolerance_s: float, samples: int, max_age_s: float | None = None) -> None:
        self._base_tolerance_s = base_tolerance_s
        self._max_age_s = max_age_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=samples)

    def add(self, lateness_s: float, now: float | None = None) -> None:
        self._samples.append((time.monotonic() if now is None else now, max(0.0, lateness_s)))

    def tolerance_s(self, now: float | None = None) -> float:
        """The late tolerance these wake-ups ask for: the configured one, or more when a wider one
        would have cost less throughput than the slots lost to the wake-ups beyond it."""
        if self._max_age_s is not None:
            cutoff = (time.monotonic() if now is None else now) - self._max_age_s
            while self._samples and self._samples[0][0] < cutoff:
                self._samples.popleft()
        return cheapest_tolerance([lateness for _, lateness in self._samples], self._base_tolerance_s)


class PacedLateness(LatenessSamples):
    """The pool of this sender's paced wake-ups, every tenant's, that each paced chunk's timing
    report asks a tolerance from."""

    def __init__(
        self, base_tolerance_s: float, samples: int = PACED_SAMPLES, max_age_s: float = PACED_MAX_AGE_S
    ) -> None:
        super().__init__(base_tolerance_s, samples, max_age_s)


class WakeLateness(LatenessSamples):
    """The probe: a timer that measures how late the loop wakes it."""

    def __init__(self, base_tolerance_s: float, period_s: float = PERIOD_S, samples: int = SAMPLES) -> None:
        super().__init__(base_tolerance_s, samples)
        self._period_s = period_s

    async def run(self) -> None:
        while True:
            due = time.monotonic() + self._period_s
            await asyncio.sleep(self._period_s)
            self.add(time.monotonic() - due)
