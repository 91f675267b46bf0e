"""Prometheus metrics of all four services, defined once so names and labels never drift.

Cardinality is bounded on purpose: labels are tenants (a bounded, operator-managed set), fixed
vocabularies (outcome, tier, reason, status, state) and queue names — never a recipient, a phone
number or a campaign id. Each service exposes whichever of these it updates on ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

NAMESPACE = "wce"

# Twilio answers in tens to hundreds of milliseconds; the long tail up to the client timeout
# is what the p99 panel and alerts look at.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# Throttle waits range from nothing (idle tenant) to seconds (a large campaign at its rate).
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

MESSAGES = Counter(
    "messages",
    "Send attempts by outcome (sent, failed, retry, unknown, suppressed, ...).",
    ["tenant", "outcome"],
    namespace=NAMESPACE,
)
TWILIO_LATENCY = Histogram(
    "twilio_request_seconds",
    "Latency of Twilio REST calls.",
    ["operation"],
    namespace=NAMESPACE,
    buckets=_LATENCY_BUCKETS,
)
THROTTLE_WAIT = Histogram(
    "throttle_wait_seconds",
    "Time a message waited for its tenant's rate limit before its send slot.",
    ["tenant"],
    namespace=NAMESPACE,
    buckets=_WAIT_BUCKETS,
)
RETRIES = Counter(
    "retries",
    "Messages scheduled for a retry, by delay tier (e.g. 5s, 30s).",
    ["tenant", "tier"],
    namespace=NAMESPACE,
)
WEBHOOK_REJECTIONS = Counter(
    "webhook_rejections",
    "Twilio webhooks refused with 403 (missing_signature, bad_signature, unknown_tenant).",
    ["reason"],
    namespace=NAMESPACE,
)
TWILIO_ERRORS = Counter(
    "twilio_errors",
    "Twilio error codes seen, by code and stage: send (the create's answer) or callback (a status"
    " callback) — a bounded vocabulary.",
    ["code", "stage"],
    namespace=NAMESPACE,
)
EFFECTIVE_RATE = Gauge(
    "effective_rate_per_second",
    "A rate-limited tenant's effective send rate: its configured rate, backed off after Twilio"
    " refused for rate and recovering since.",
    ["tenant"],
    namespace=NAMESPACE,
)
QUEUE_DEPTH = Gauge(
    "queue_depth",
    "Messages ready in a broker queue (sampled periodically).",
    ["queue"],
    namespace=NAMESPACE,
)
CAMPAIGN_PROGRESS = Gauge(
    "campaign_recipients",
    "Recipients of the tenant's running campaigns by state (summed over those campaigns).",
    ["tenant", "state"],
    namespace=NAMESPACE,
)
RUNNING_CAMPAIGNS = Gauge(
    "running_campaigns",
    "Campaigns currently running, per tenant.",
    ["tenant"],
    namespace=NAMESPACE,
)
HELD_CAMPAIGNS = Gauge(
    "held_campaigns",
    "Running campaigns held on purpose, per tenant and reason (messaging_limit, spam_rate_limit).",
    ["tenant", "reason"],
    namespace=NAMESPACE,
)
CALLBACKS = Counter(
    "status_callbacks",
    "Status callbacks persisted, by Twilio status (replays excluded).",
    ["status"],
    namespace=NAMESPACE,
)
CALLBACK_REPLAYS = Counter(
    "status_callback_replays",
    "Status callbacks dropped as replays of one already persisted.",
    namespace=NAMESPACE,
)
ORPHAN_CALLBACKS = Counter(
    "orphan_callbacks",
    "Status callbacks kept for later because no recipient had their message SID yet.",
    namespace=NAMESPACE,
)
CALLBACK_LAG = Histogram(
    "status_callback_lag_seconds",
    "Time from a status callback reaching the webhook to its batch being committed.",
    namespace=NAMESPACE,
    buckets=_LATENCY_BUCKETS,
)
INBOUND_MESSAGES = Counter(
    "inbound_messages",
    "Inbound WhatsApp messages by the action they caused (opt_out, opt_in, none).",
    ["action"],
    namespace=NAMESPACE,
)
SUPPRESSION_CHANGES = Counter(
    "suppression_changes",
    "Numbers added to or removed from suppression lists, by action and source.",
    ["action", "source"],
    namespace=NAMESPACE,
)
PARKED_MESSAGES = Counter(
    "parked_messages",
    "Messages a consumer could not process, moved to <queue>.dlq, by source queue and reason"
    " (invalid, rejected, failed, redelivery_limit).",
    ["queue", "reason"],
    namespace=NAMESPACE,
)
BACKGROUND_TASK_UP = Gauge(
    "background_task_up",
    "1 while a supervised background task of a service runs, 0 after it died (until restarted).",
    ["service", "task"],
    namespace=NAMESPACE,
)
AUTH_FAILURES = Counter(
    "auth_failures",
    "Requests refused for a missing or wrong credential, by surface (tenant_api, operator_api, webhook).",
    ["surface"],
    namespace=NAMESPACE,
)
RATE_LIMITED = Counter(
    "rate_limited",
    "Requests answered 429 by the abuse limits (rate limits and lockouts), by surface.",
    ["surface"],
    namespace=NAMESPACE,
)
PROGRESS_STREAMS = Gauge(
    "progress_streams",
    "Progress streams (SSE) open on this tracker.",
    namespace=NAMESPACE,
)
PROGRESS_POLLS = Counter(
    "progress_polls",
    "Database polls for progress streams: one per followed campaign and interval, however many streams.",
    namespace=NAMESPACE,
)

# HTTP requests of every service (API, webhooks, probes), by route template; see shared/http_metrics.py.
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template, method and status.",
    ["service", "route", "method", "status"],
    namespace=NAMESPACE,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
OUTBOUND_WEBHOOK_ATTEMPTS = Counter(
    "outbound_webhook_attempts",
    "Outbound webhook delivery attempts by outcome: succeeded, retry (failed, tried again later),"
    " failed (failed for the last time).",
    ["tenant", "outcome"],
    namespace=NAMESPACE,
)
OUTBOUND_WEBHOOK_SECONDS = Histogram(
    "outbound_webhook_attempt_seconds",
    "Duration of outbound webhook attempts, up to the attempt deadline.",
    namespace=NAMESPACE,
    buckets=_LATENCY_BUCKETS,
)
OUTBOUND_WEBHOOK_DISABLED = Counter(
    "outbound_webhook_endpoints_disabled",
    "Outbound webhook endpoints disabled because every attempt kept failing.",
    ["tenant"],
    namespace=NAMESPACE,
)
