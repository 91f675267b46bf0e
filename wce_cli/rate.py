"""A campaign's speed as the CLI shows it: recipients settled per second over the last few seconds,
so the figure follows the campaign now (not its average since it started) and the ETA with it."""

from __future__ import annotations

from collections import deque

WINDOW_S = 10.0
# Below this much observed time the server's own figure is shown instead.
MIN_SPAN_S = 1.5


class RecentRate:
    """Feed it (time, recipients done) as updates arrive; it answers the rate over the window."""

    def __init__(self, window_s: float = WINDOW_S, min_span_s: float = MIN_SPAN_S) -> None:
        self.window_s = window_s
        self.min_span_s = min_span_s
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, at: float, done: int) -> None:
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()  # retried recipients moved back: start counting again
        self._samples.append((at, done))
        while len(self._samples) > 2 and at - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def per_second(self) -> float | None:
        """Recipients per second over the window, or None while too little time was observed."""
        if len(self._samples) < 2:
            return None
        (first_at, first_done), (last_at, last_done) = self._samples[0], self._samples[-1]
        span = last_at - first_at
        if span < self.min_span_s:
            return None
        return (last_done - first_done) / span


def eta_seconds(remaining: int, rate: float | None) -> float | None:
    if not remaining or not rate or rate <= 0:
        return None
    return remaining / rate
