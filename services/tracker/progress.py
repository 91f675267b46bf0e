"""A campaign's progress from its per-state counts: what is done, how fast it goes, when it ends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.recipient_states import OPEN_RECIPIENT_STATES, RECIPIENT_STATES
from shared.sending_window import SendingWindow, estimate_finish

RATE_WINDOW_S = 10.0
FINAL_CAMPAIGN_STATES = frozenset({"completed", "cancelled", "failed"})


@dataclass(frozen=True)
class Progress:
    campaign_id: str
    state: str
    pause_reason: str | None
    counts: dict[str, int]
    total: int
    done: int
    remaining: int
    rate_per_s: float
    eta_s: float | None
    # The tenant's configured rate and the rate in force after Twilio's refusals (None: unlimited).
    configured_rate_per_s: float | None = None
    effective_rate_per_s: float | None = None
    # A running campaign that sends nothing now: why (``sending_window``…) and until when.
    hold_reason: str | None = None
    hold_until: datetime | None = None
    scheduled_at: datetime | None = None
    # When the campaign should be done, from the rate and the sending windows.
    estimated_finish: datetime | None = None

    @property
    def waiting(self) -> str | None:
        """What the campaign waits for, in words, with the time it ends when known."""
        if self.state == "scheduled" and self.scheduled_at is not None:
            return f"scheduled for {self.scheduled_at.isoformat()}"
        if self.state != "running" or self.hold_reason is None:
            return None
        what = HOLD_WORDS.get(self.hold_reason, self.hold_reason.replace("_", " "))
        return f"waiting for {what}" + (f" (opens {self.hold_until.isoformat()})" if self.hold_until else "")

    # Replies attributed to the campaign's messages, and how many recipients sent them.
    replies: int = 0
    replied: int = 0

    @property
    def final(self) -> bool:
        return self.state in FINAL_CAMPAIGN_STATES

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "state": self.state,
            "pause_reason": self.pause_reason,
            "counts": self.counts,
            "total": self.total,
            "done": self.done,
            "remaining": self.remaining,
            "percent": round(100.0 * self.done / self.total, 2) if self.total else 0.0,
            "rate_per_s": self.rate_per_s,
            "eta_s": self.eta_s,
            "configured_rate_per_s": self.configured_rate_per_s,
            "effective_rate_per_s": self.effective_rate_per_s,
            "hold_reason": self.hold_reason,
            "hold_until": _iso(self.hold_until),
            "waiting": self.waiting,
            "scheduled_at": _iso(self.scheduled_at),
            "estimated_finish": _iso(self.estimated_finish),
            "replies": self.replies,
            "replied": self.replied,
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# How a hold reads after "waiting for".
HOLD_WORDS = {
    "sending_window": "the sending window",
    "messaging_limit": "room in the tenant's WhatsApp messaging limit (unique numbers per 24 hours)",
    "spam_rate_limit": "WhatsApp's spam-rate hold on the sender (131048) to end",
}


@dataclass(frozen=True)
class Timing:
    """What the finish estimate needs besides the counts: now, the tenant's window and zone, the
    campaign's hold and schedule."""

    now: datetime
    timezone: str
    window: SendingWindow | None = None
    hold_reason: str | None = None
    hold_until: datetime | None = None
    scheduled_at: datetime | None = None


def build_progress(
    *,
    campaign_id: str,
    state: str,
    pause_reason: str | None,
    counts: Mapping[str, int],
    sent_in_window: int,
    window_s: float = RATE_WINDOW_S,
    configured_rate_per_s: float | None = None,
    effective_rate_per_s: float | None = None,
    timing: Timing | None = None,
    replies: int = 0,
    replied: int = 0,
) -> Progress:
    full_counts = {name: int(counts.get(name, 0)) for name in RECIPIENT_STATES}
    total = sum(full_counts.values())
    remaining = sum(full_counts[name] for name in OPEN_RECIPIENT_STATES)
    rate = round(sent_in_window / window_s, 2) if window_s > 0 else 0.0
    # An ETA only means something while the campaign moves.
    eta = round(remaining / rate, 1) if state == "running" and rate > 0 and remaining else None
    finish = None
    if timing is not None and state == "running" and remaining:
        # Held, nothing moves: the estimate goes at the rate in force from the next opening.
        pace = rate if rate > 0 and timing.hold_reason is None else (effective_rate_per_s or rate)
        finish = estimate_finish(
            timing.window, ZoneInfo(timing.timezone), at=timing.now, remaining=remaining, rate_per_s=pace
        )
        eta = None if finish is None else round((finish - timing.now).total_seconds(), 1)
    return Progress(
        campaign_id=campaign_id,
        state=state,
        pause_reason=pause_reason,
        counts=full_counts,
        total=total,
        done=total - remaining,
        remaining=remaining,
        rate_per_s=rate,
        eta_s=eta,
        configured_rate_per_s=configured_rate_per_s,
        effective_rate_per_s=None if effective_rate_per_s is None else round(effective_rate_per_s, 1),
        hold_reason=None if timing is None else timing.hold_reason,
        hold_until=None if timing is None else timing.hold_until,
        scheduled_at=None if timing is None else timing.scheduled_at,
        estimated_finish=finish,
        replies=replies,
        replied=replied,
    )
