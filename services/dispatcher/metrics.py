"""Dispatcher metrics (labels: tenant only)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from shared.metrics import NAMESPACE

CHUNKS_DISPATCHED = Counter(
    "chunks_dispatched", "Send chunks handed to the senders.", ["tenant"], namespace=NAMESPACE
)
RECIPIENTS_DISPATCHED = Counter(
    "recipients_dispatched", "Recipients given a send slot.", ["tenant"], namespace=NAMESPACE
)
BATCHES_DROPPED = Counter(
    "batches_dropped",
    "Recipient batches dropped because their campaign was not running (re-published on resume).",
    ["tenant"],
    namespace=NAMESPACE,
)
TENANT_RATE = Gauge(
    "tenant_rate_per_second",
    "The rate the dispatcher applies to a tenant (0: unlimited).",
    ["tenant"],
    namespace=NAMESPACE,
)
CHUNKS_OUTSTANDING = Gauge(
    "chunks_outstanding",
    "Chunks of an unlimited-rate tenant not yet acknowledged by a sender.",
    ["tenant"],
    namespace=NAMESPACE,
)
RESLOTTED = Counter(
    "recipients_reslotted",
    "Recipients a sender came too late for, given the tenant's next free slots.",
    ["tenant"],
    namespace=NAMESPACE,
)
DISPATCH_LEAD = Gauge(
    "dispatch_lead_seconds",
    "How far ahead this dispatcher hands out slots (grows when chunks reach senders late).",
    namespace=NAMESPACE,
)
LATE_TOLERANCE = Gauge(
    "late_tolerance_seconds",
    "How late after its slot a message may start (grows with senders' wake-up lateness; the slot"
    " spacing grows with it).",
    namespace=NAMESPACE,
)
