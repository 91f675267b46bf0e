"""A campaign's progress from its per-state counts: what is done, how fast it goes, when it ends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RATE_WINDOW_S = 10.0
FINAL_CAMPAIGN_STATES = frozenset({"completed", "cancelled", "failed"})
# Recipients still to be settled by the send path; every other state is an outcome.
OPEN_RECIPIENT_STATES = frozenset({"pending", "queued", "sending", "retry_wait", "unknown"})
RECIPIENT_STATES: tuple[str, ...] = (
    "pending",
    "queued",
    "sending",
    "retry_wait",
    "unknown",
    "sent",
    "delivered",
    "read",
    "undelivered",
    "failed_delivery",
    "failed",
    "suppressed",
    "skipped",
    "cancelled",
)


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
    # Set while the running campaign is held on purpose (shared/holds.py): reason, description,
    # until and in_s.
    hold: dict[str, Any] | None = None
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
            "hold": self.hold,
            "counts": self.counts,
            "total": self.total,
            "done": self.done,
            "remaining": self.remaining,
            "percent": round(100.0 * self.done / self.total, 2) if self.total else 0.0,
            "rate_per_s": self.rate_per_s,
            "eta_s": self.eta_s,
            "configured_rate_per_s": self.configured_rate_per_s,
            "effective_rate_per_s": self.effective_rate_per_s,
            "replies": self.replies,
            "replied": self.replied,
        }


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
    hold: dict[str, Any] | None = None,
    replies: int = 0,
    replied: int = 0,
) -> Progress:
    full_counts = {name: int(counts.get(name, 0)) for name in RECIPIENT_STATES}
    total = sum(full_counts.values())
    remaining = sum(full_counts[name] for name in OPEN_RECIPIENT_STATES)
    rate = round(sent_in_window / window_s, 2) if window_s > 0 else 0.0
    # An ETA only means something while the campaign moves.
    eta = (
        round(remaining / rate, 1) if state == "running" and hold is None and rate > 0 and remaining else None
    )
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
        hold=hold,
        replies=replies,
        replied=replied,
    )
