"""Sender metrics beyond the shared ones (labels: tenant only)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from shared.metrics import NAMESPACE

CREDITS_DEBITED = Counter(
    "credits_debited", "Credits debited for messages Twilio accepted.", ["tenant"], namespace=NAMESPACE
)
AUTO_PAUSES = Counter(
    "auto_pauses", "Campaigns paused by a sender, by reason.", ["tenant", "reason"], namespace=NAMESPACE
)
HOLDS = Counter(
    "campaign_holds",
    "Campaigns held by a sender, by reason (messaging_limit: the tenant's WhatsApp messaging limit is"
    " reached; spam_rate_limit: Meta refused the sender for spam, 131048).",
    ["tenant", "reason"],
    namespace=NAMESPACE,
)
CHUNKS_IN_FLIGHT = Gauge("sender_chunks_in_flight", "Send chunks being processed.", namespace=NAMESPACE)
RECONCILED = Counter(
    "reconciled",
    "Unknown sends looked up by the reconciler, by result (found, not_found_yet, not_found).",
    ["tenant", "result"],
    namespace=NAMESPACE,
)
STATUS_RECHECKS = Counter(
    "status_rechecks",
    "Rows left at sent/delivered re-checked with Twilio's Message fetch, by outcome"
    " (changed, unchanged, not_found, error).",
    ["outcome"],
    namespace=NAMESPACE,
)
SLOTS_MISSED_AT_WRITE = Counter(
    "sender_slots_missed_at_write",
    "Paced creates not written because their slot's late tolerance passed before the write (the"
    " machine starved the sender); each took the chunk's next slot, nothing was sent.",
    ["tenant"],
    namespace=NAMESPACE,
)
