"""Whether a campaign may send right now, as this sender knows it, and its recent error rate.

Fed by lifecycle events (immediate), a short database poll of the campaigns being sent (the
source of truth, in case an event is lost) and this sender's own auto-pauses, which hold until
the pause is seen applied — otherwise the poll would read ``running`` and unblock it before the
segmenter has processed the pause command.
"""

from __future__ import annotations

from collections import deque
from uuid import UUID

from shared.events import HELD

SENDABLE = "running"
# Paused for lack of credits: messages already claimed hold a reserved credit each, so they may
# still go; nothing new is claimed because a claim needs a running campaign.
INSUFFICIENT_CREDITS = "insufficient_credits"
# Stops that let messages already claimed go (nothing new is claimed meanwhile): a pause for
# credits (each claimed message holds a reserved credit), a hold for the tenant's messaging limit
# (each claimed number is already counted in it).
LETS_CLAIMED_GO = frozenset({("paused", INSUFFICIENT_CREDITS), (HELD, "messaging_limit")})


class ErrorWindow:
    """The last ``size`` attempts of one campaign: trips at ``threshold`` errors once it has seen
    at least ``min_attempts``."""

    def __init__(self, size: int, threshold: float, min_attempts: int) -> None:
        self._outcomes: deque[bool] = deque(maxlen=size)
        self._errors = 0
        self._threshold = threshold
        self._min_attempts = min(min_attempts, size)

    def add(self, is_error: bool) -> None:
        if len(self._outcomes) == self._outcomes.maxlen and self._outcomes[0]:
            self._errors -= 1
        self._outcomes.append(is_error)
        self._errors += is_error

    @property
    def rate(self) -> float:
        return self._errors / len(self._outcomes) if self._outcomes else 0.0

    def tripped(self) -> bool:
        return len(self._outcomes) >= self._min_attempts and self.rate >= self._threshold


class CampaignGate:
    def __init__(self, *, window: int, threshold: float, min_attempts: int, hold_s: float = 30.0) -> None:
        self._states: dict[UUID, str] = {}
        self._reasons: dict[UUID, str | None] = {}
        self._local: dict[UUID, float] = {}
        self._windows: dict[UUID, ErrorWindow] = {}
        self._window_args = (window, threshold, min_attempts)
        self._hold_s = hold_s

    def blocked(self, campaign_id: UUID) -> bool:
        if campaign_id in self._local:
            return True
        state = self._states.get(campaign_id, SENDABLE)
        return state != SENDABLE and (state, self._reasons.get(campaign_id)) not in LETS_CLAIMED_GO

    def held(self, campaign_id: UUID) -> bool:
        """Running but holding (blocked only by that, not by a pause of this sender's)."""
        return campaign_id not in self._local and self._states.get(campaign_id) == HELD

    def observe(self, campaign_id: UUID, state: str, reason: str | None = None) -> None:
        self._reasons[campaign_id] = reason
        previous = self._states.get(campaign_id)
        if state != SENDABLE:
            self._local.pop(campaign_id, None)
        if state == SENDABLE and previous is not None and previous != SENDABLE:
            # Resumed: judge the campaign afresh, or the old errors would pause it again at once.
            self._windows.pop(campaign_id, None)
        self._states[campaign_id] = state

    def prune(self, keep: set[UUID]) -> None:
        """Forget campaigns this sender no longer works on."""
        for campaign_id in set(self._states) - keep:
            del self._states[campaign_id]
            self._reasons.pop(campaign_id, None)
        for campaign_id in set(self._windows) - keep:
            del self._windows[campaign_id]

    def auto_pause(self, campaign_id: UUID, now: float) -> bool:
        """Block the campaign here at once; True when it was not blocked by us already."""
        fresh = campaign_id not in self._local
        self._local[campaign_id] = now + self._hold_s
        self._windows.pop(campaign_id, None)
        return fresh

    def expire(self, now: float) -> None:
        """Drop local pauses never seen applied (the command was lost or refused)."""
        for campaign_id, until in list(self._local.items()):
            if until < now:
                del self._local[campaign_id]

    def record(self, campaign_id: UUID, errors: list[bool]) -> bool:
        """Add a chunk's attempts to the campaign's window; True when the error rate trips."""
        window = self._windows.get(campaign_id)
        if window is None:
            window = self._windows[campaign_id] = ErrorWindow(*self._window_args)
        for is_error in errors:
            window.add(is_error)
        return window.tripped()

    @property
    def locally_paused(self) -> set[UUID]:
        return set(self._local)
