"""The states of a recipient (section 4 of the design: the recipient state machine), and which of
them the send path still works on. Pure facts, the same as the database's check on
``recipients.state``: the tracker counts progress by them, the console lists and filters by them.

The tracker's delivery statuses move a recipient on from ``sent`` (``sent < delivered < read``,
``sent < undelivered | failed_delivery``, services/tracker/status.py), or back to ``retry_wait``
when the callback reports WhatsApp's spam or pair-rate refusal (131048, 131056: not delivered,
sent again later; docs/duplicates.md); a campaign's failed recipients can be sent to again on
request; no other state is ever left.
"""

from __future__ import annotations

# In the order a recipient meets them, the order counts and filters are shown in.
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
# Recipients the send path has still to settle: not sent yet, or not known whether sent.
OPEN_RECIPIENT_STATES = frozenset({"pending", "queued", "sending", "retry_wait", "unknown"})
# Every other state is an outcome of the send path: the recipient counts as done.
TERMINAL_RECIPIENT_STATES = frozenset(RECIPIENT_STATES) - OPEN_RECIPIENT_STATES
