"""A running campaign that waits on purpose: why, and until when.

A hold is two columns of ``campaigns`` (``hold_reason``, ``hold_until``), not a state: the
campaign stays ``running`` (pause, resume and cancel work as always) and its waiting recipients
stay where they are. Whatever holds a campaign sets both; when ``hold_until`` has passed, the
sender's maintenance clears them and publishes the campaign's waiting recipients again, so a hold
ends by itself. The progress payload, the campaign API and the CLI show a hold with its reason,
a sentence saying what it means and the time it is expected to end.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

# The tenant's WhatsApp messaging limit (unique numbers per moving 24 hours) is reached.
MESSAGING_LIMIT = "messaging_limit"
# Meta refused the tenant's sender for spam (131048): all its sending waits for a while.
SPAM_RATE_LIMIT = "spam_rate_limit"

DESCRIPTIONS = {
    MESSAGING_LIMIT: (
        "the tenant's WhatsApp messaging limit (unique numbers per 24 hours) is reached;"
        " sending goes on as the window moves"
    ),
    SPAM_RATE_LIMIT: "WhatsApp refused the sender for spam (131048); sending waits, then goes on",
}


def current_hold(
    *, state: str, reason: str | None, until: datetime | None, now: datetime
) -> dict[str, Any] | None:
    """The hold in force for a campaign in ``state`` at ``now``, as shown to users; None when it
    is not held (a hold only means something while the campaign runs, and until it ends)."""
    if state != "running" or reason is None or until is None or until <= now:
        return None
    return {
        "reason": reason,
        "description": DESCRIPTIONS.get(reason, reason),
        "until": until,
        "in_s": round((until - now).total_seconds(), 1),
    }
