"""Settings from the environment (prefix ``WCE_``), one object for every service.

Every environment other than ``development`` (``test`` is a staging installation, as strict as
``production``) refuses the unsafe defaults that make a local run easy: the well-known
development encryption key and operator token, the simulator or any plain-HTTP or local Twilio
endpoint, and a public URL Twilio could not reach over HTTPS — the last two unless explicitly
allowed. A weak operator token is refused in every environment, and validation errors never echo
the values they refuse.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.cpu_slice import MAX_SLICE_S, MIN_SLICE_S
from shared.operator_token import OperatorTokenDigest
from shared.topology import DELIVERY_LIMIT
from shared.url_checks import insecure_url_reason

# A valid Fernet key that is public on purpose: it only ever protects development data.
DEVELOPMENT_ENCRYPTION_KEY = "ZGV2ZWxvcG1lbnQta2V5LW5vdC1mb3ItcHJvZC0zMmI="
DEVELOPMENT_OPERATOR_TOKEN = "development-operator-token-not-for-production"
# The web console's session-cookie key in development, public on purpose like the one above.
DEVELOPMENT_CONSOLE_SESSION_KEY = "ZGV2ZWxvcG1lbnQtY29uc29sZS1zZXNzaW9uLWtleS0="


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    # Inputs stay out of validation errors: a refused setting may be a secret.
    model_config = SettingsConfigDict(
        env_prefix="WCE_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"

    database_url: str = "postgresql://postgres@127.0.0.1:5432/wce"
    db_pool_min: int = 2
    db_pool_max: int = 10
    # Database platform: who migrates, and how connections are made (README "Database roles and
    # migrations"). Services migrate (and create a missing database) at start only while this is
    # true; deployments set it false and run ``python -m shared.migrate`` as a one-off job.
    migrate_at_start: bool = True
    # The owner role's URL for migrations (defaults to WCE_DATABASE_URL).
    migration_database_url: str | None = None
    # asyncpg's prepared-statement cache; 0 behind a transaction-mode PgBouncer older than 1.21.
    db_statement_cache_size: int = Field(default=100, ge=0)
    # The connection budget (shared/connection_budget.py): replicas per service ("sender=3,
    # tracker=2"; 1 when absent), the limit when a pooler stands in front (else read from the
    # server), and connections kept free for operators and one-off commands.
    db_replicas: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    db_max_connections: int | None = Field(default=None, ge=1)
    db_reserved_connections: int = Field(default=5, ge=0)
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Accept booking events and campaign commands only from broker users allowed for the tenant
    # they name (see shared/publishers.py); the engine's own user may act for every tenant.
    publisher_check_enabled: bool = False
    broker_publish_timeout_s: float = 10.0
    startup_retry_s: float = 60.0

    # Newest key first; older keys still decrypt, so keys rotate without downtime.
    encryption_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEVELOPMENT_ENCRYPTION_KEY]
    )
    # Only the token's digest is kept; see shared/operator_token.py.
    operator_token: Annotated[OperatorTokenDigest, NoDecode] = Field(
        default_factory=lambda: OperatorTokenDigest.of(DEVELOPMENT_OPERATOR_TOKEN)
    )

    twilio_api_base_url: str = "http://127.0.0.1:8010"
    twilio_content_base_url: str = "http://127.0.0.1:8010"
    twilio_timeout_s: float = 10.0
    twilio_max_connections: int = 200
    # Idle keep-alive connections to Twilio are closed after this, before a server closes them.
    twilio_max_idle_s: float = 4.0
    # Public URL Twilio uses to reach the tracker (status callbacks, inbound messages).
    public_base_url: str = "http://127.0.0.1:8001"
    # Outside development: allow a plain-HTTP or local Twilio endpoint (the simulator), and a
    # public URL that is not public HTTPS. Only for closed test installations.
    allow_insecure_twilio: bool = False
    allow_insecure_public_url: bool = False

    segmenter_port: int = 8000
    tracker_port: int = 8001
    dispatcher_port: int = 8002
    sender_port: int = 8003
    http_host: str = "127.0.0.1"
    # /docs, /redoc and /openapi.json on the services' ports (off: only the routes themselves).
    api_docs_enabled: bool = True
    # When set, /metrics leaves the service's port for that port plus this offset, so the
    # public ports (the tracker's faces the internet) expose no metrics.
    internal_port_offset: int = Field(default=0, ge=0, le=50000)
    # Abuse limits of the tenant and operator APIs (shared by all replicas, in PostgreSQL):
    # requests per fixed window, and a lockout doubling from its base after repeated failed logins.
    rate_limits_enabled: bool = True
    rate_limit_window_s: int = Field(default=10, gt=0)
    tenant_api_requests_per_key: int = Field(default=2000, gt=0)
    tenant_api_requests_per_address: int = Field(default=3000, gt=0)
    operator_api_requests_per_address: int = Field(default=300, gt=0)
    tenant_api_failures_allowed: int = Field(default=20, ge=0)
    operator_api_failures_allowed: int = Field(default=5, ge=0)
    auth_lockout_base_s: float = Field(default=1.0, gt=0)
    auth_lockout_max_s: float = Field(default=900.0, gt=0)
    auth_failure_memory_s: float = Field(default=900.0, gt=0)
    # Proxies whose X-Forwarded-For names the client (comma-separated addresses); without them
    # the client address is the connection's peer.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Request bodies past these sizes are refused with 413 before they are parsed (the larger on
    # the bulk routes).
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_bulk_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)

    default_rate_per_second: int = 80
    chunk_size: int = 20
    # Spacing margin that keeps send starts below the rate despite timer and network jitter.
    throttle_margin: float = 0.015
    dispatch_lead_s: float = 0.25
    late_tolerance_s: float = 0.008
    # On a busy machine the lead and the tolerance grow to what senders observe, up to these
    # (shared/throttle.AdaptiveTiming); the slot spacing grows with the tolerance.
    dispatch_max_lead_s: float = Field(default=1.0, gt=0)
    late_tolerance_max_s: float = Field(default=0.1, gt=0)
    # After Twilio refuses for rate, a tenant's effective rate regains this fraction of its
    # configured rate per second (shared/pacing.py).
    pacing_recovery_per_s: float = 0.02
    publish_batch_size: int = 500

    sender_concurrency: int = 256
    # Share of a sender's concurrent Twilio calls kept for messages with a slot (rate-limited
    # tenants'): an unlimited tenant's backlog never takes them, so a slot never waits for a call,
    # and fewer of its requests queue at Twilio ahead of another tenant's. A quarter: half left an
    # unlimited campaign 100 of a sender's 200 calls, 1,420 messages a second at 100 ms of Twilio
    # latency against 2,262 with none kept (bench/engine_e2e.py); a quarter, 2,050, and still 50
    # calls a sender for the rate-limited tenants, whose slots need rate x latency of them.
    sender_paced_calls_share: float = Field(default=0.25, ge=0, lt=1)
    sender_prefetch: int = 64
    # The CPU time slice a sender's event loop asks Linux for (shared/cpu_slice.py): a paced
    # message wakes for its slot sooner on a machine kept busy by other work; 0 leaves the
    # kernel's default. Beside two CPU-bound processes on two cores, 0.3 ms raised a 400/s
    # campaign's mean from 392.2 to 392.7/s (medians of eight campaigns each, alternated).
    sender_cpu_slice_s: float = Field(default=0.0003, ge=0, le=MAX_SLICE_S)
    max_attempts: int = 6
    retry_tiers_s: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [5, 30, 120, 600, 1800])
    lease_s: float = 60.0
    reconcile_after_s: float = 30.0
    # How long after a create's timeout Twilio may still create its message (a request it took
    # before the client gave up): "not found" is believed only for a create last possibly written
    # longer than twilio_timeout_s plus this ago (services/sender/maintenance.py).
    reconcile_margin_s: float = Field(default=30.0, gt=0)
    sweep_idle_s: float = 30.0
    error_rate_threshold: float = 0.2
    error_rate_window: int = 200
    error_rate_min_attempts: int = 50

    credits_enabled: bool = True

    # WhatsApp messaging limits: a tenant with a tier (operator-set) messages at most that many
    # unique numbers in this moving window; a campaign that would pass it is held until the window
    # allows. Meta's window is 24 hours; tests shorten it.
    messaging_window_s: float = Field(default=86_400.0, gt=0)
    # How long a tenant's sending is held after Meta refused it for spam (131048).
    spam_hold_s: float = Field(default=900.0, gt=0)
    # The least wait before a number refused for the pair rate (131056) is tried again.
    pair_rate_retry_s: float = Field(default=60.0, ge=0)

    callback_batch_size: int = 500
    # A status is visible at most this much later; longer waits make fuller batches, and each
    # batch costs the tracker and the database a fixed set of statements.
    callback_flush_s: float = 0.2
    event_retention_days: int = 90
    # How often kept (orphan) callbacks are matched against newly recorded message SIDs.
    orphan_match_interval_s: float = 1.0
    # How often queue depths and running-campaign progress are sampled into metrics.
    metrics_sample_interval_s: float = 5.0
    # Progress streams (SSE): open at once per API key and per tracker (429 past either), how long
    # one lasts before the client reconnects, and how often a campaign that is not running (paused,
    # snapshotting) is polled; every stream of a campaign shares one poll.
    progress_streams_per_key: int = Field(default=20, gt=0)
    progress_streams_max: int = Field(default=200, gt=0)
    progress_stream_max_lifetime_s: float = Field(default=900.0, gt=0)
    progress_stream_idle_interval_s: float = Field(default=5.0, gt=0)

    # Sending engine (dispatcher and sender).
    # Chunks of one unlimited-rate tenant in flight at once: keeps the shared send queue short so
    # a big campaign of one tenant never queues far ahead of another tenant's chunks.
    unlimited_inflight_chunks: int = 16
    # Recipients per chunk of an unlimited-rate tenant: no slot span to keep short, so chunks are
    # larger and each costs the sender one claim and one settlement statement for more messages.
    unlimited_chunk_size: int = 100
    # A chunk whose completion was never acknowledged (its sender died) stops counting after this.
    chunk_feedback_timeout_s: float = 30.0
    # How often dispatchers re-read tenants' rates and campaigns' states from the database.
    dispatcher_refresh_s: float = 1.0
    # How often senders re-read the states of the campaigns they are sending (pause within 1 s).
    sender_gate_poll_s: float = 0.5
    # Lease expiry, reconciliation and the stuck-row sweep run this often (in one sender at a time).
    maintenance_interval_s: float = 1.0
    # Maintenance leadership is a lease renewed every third of this: a sender that dies or
    # freezes holding it is replaced within this long.
    maintenance_lease_s: float = Field(default=5.0, gt=0)
    # Rows left at sent/delivered this long (their status callbacks may be lost) are re-checked
    # with Twilio's Message fetch, at most this many per tenant per maintenance pass, each row at
    # most status_recheck_max times (the interval doubling every time).
    status_recheck_after_s: float = Field(default=900.0, gt=0)
    status_recheck_per_tenant: int = Field(default=50, ge=1)
    status_recheck_max: int = Field(default=4, ge=0, le=30)
    # How often the maintenance deletes the frequency-cap entries whose every claim is older than
    # the longest cap window (365 days); a backlog goes a slice per pass until none is left.
    frequency_retention_interval_s: float = Field(default=3600.0, gt=0)

    # Consumers: back-off between deliveries of a message that failed for a passing reason, and
    # the deliveries any message gets before it is parked.
    # Below the quorum queues' own delivery limit, so a consumer parks with its reasons first.
    consumer_max_deliveries: int = Field(default=20, ge=1, lt=DELIVERY_LIMIT)
    consumer_retry_base_s: float = Field(default=0.5, gt=0)
    consumer_retry_max_s: float = Field(default=30.0, gt=0)

    # Per-tenant dispatch queues: replicated quorum queues, or classic ones where one broker node
    # must hold many tenants (shared/topology.py says why and what it costs).
    dispatch_queue_type: Literal["quorum", "classic"] = "quorum"

    # Scheduled campaigns: how often each segmenter looks for campaigns whose time has come.
    schedule_poll_s: float = Field(default=1.0, gt=0)
    # Development and tests only: a file holding seconds to add to the clock that scheduling and
    # sending windows read, so a test can move the services' time (shared/clock.py).
    clock_offset_file: str | None = None

    # Outbound webhooks (README "Outbound webhooks"), delivered by the trackers. Outside
    # development an endpoint must be https to a public host, and a delivery connects only to
    # public addresses, unless insecure URLs are allowed (a closed test installation).
    webhook_delivery_enabled: bool = True
    allow_insecure_webhook_urls: bool = False
    # Delay before each retry of a delivery that failed; one attempt more than there are tiers.
    webhook_retry_tiers_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [60.0, 300.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0]
    )
    # The whole attempt (connect, send, answer) must end within this; the answer is read up to
    # the byte limit, and only its first characters are kept.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)
    webhook_max_response_bytes: int = Field(default=64 * 1024, ge=1024)
    # Deliveries in flight per tracker process, per endpoint and per tenant (the last two across
    # every tracker): a slow endpoint holds at most its own share.
    webhook_concurrency: int = Field(default=32, ge=1, le=1000)
    webhook_endpoint_concurrency: int = Field(default=4, ge=1, le=100)
    webhook_tenant_concurrency: int = Field(default=8, ge=1, le=1000)
    # An endpoint is disabled once its attempts have all failed for this long and this many times.
    webhook_disable_after_s: float = Field(default=3 * 86400.0, ge=0)
    webhook_disable_after_failures: int = Field(default=50, ge=1)
    # How often the trackers look for due deliveries and new message events.
    webhook_poll_s: float = Field(default=0.5, gt=0)
    # A message event id not yet visible (its transaction still open) is looked for this long.
    webhook_event_settle_s: float = Field(default=60.0, gt=0)

    @field_validator(
        "encryption_keys", "retry_tiers_s", "trusted_proxies", "webhook_retry_tiers_s", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("db_replicas", mode="before")
    @classmethod
    def _replicas(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        replicas: dict[str, int] = {}
        for part in value.split(","):
            if not part.strip():
                continue
            service, sep, count = str(part).partition("=")
            if not sep or not count.strip().isdigit():
                raise ValueError(f"WCE_DB_REPLICAS: expected service=count, got {part!r}")
            replicas[service.strip()] = int(count)
        return replicas

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.environment != "development":
            self._refuse_development_defaults()
        if not self.encryption_keys:
            raise ValueError("WCE_ENCRYPTION_KEYS needs at least one key")
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("WCE_DB_POOL_MIN must not exceed WCE_DB_POOL_MAX")
        unknown = set(self.db_replicas) - {"segmenter", "tracker", "dispatcher", "sender"}
        if unknown:
            raise ValueError(f"WCE_DB_REPLICAS names unknown services: {', '.join(sorted(unknown))}")
        if sorted(self.retry_tiers_s) != self.retry_tiers_s:
            raise ValueError("WCE_RETRY_TIERS_S must be ascending")
        if 0 < self.sender_cpu_slice_s < MIN_SLICE_S:
            raise ValueError(f"WCE_SENDER_CPU_SLICE_S must be 0 or at least {MIN_SLICE_S} (Linux's least)")
        if not self.webhook_retry_tiers_s or min(self.webhook_retry_tiers_s) <= 0:
            raise ValueError("WCE_WEBHOOK_RETRY_TIERS_S needs at least one delay, each above 0")
        return self

    @property
    def strict_webhook_urls(self) -> bool:
        """Whether webhook endpoints must be https to public hosts (outside development)."""
        return self.environment != "development" and not self.allow_insecure_webhook_urls

    def _refuse_development_defaults(self) -> None:
        if DEVELOPMENT_ENCRYPTION_KEY in self.encryption_keys:
            raise ValueError("WCE_ENCRYPTION_KEYS must be set outside development")
        if self.clock_offset_file is not None:
            raise ValueError("WCE_CLOCK_OFFSET_FILE moves the services' clock: development and tests only")
        if self.operator_token == OperatorTokenDigest.of(DEVELOPMENT_OPERATOR_TOKEN):
            raise ValueError("WCE_OPERATOR_TOKEN must be set outside development")
        checks = [("WCE_PUBLIC_BASE_URL", self.public_base_url, self.allow_insecure_public_url, "PUBLIC_URL")]
        checks += [
            (name, url, self.allow_insecure_twilio, "TWILIO")
            for name, url in (
                ("WCE_TWILIO_API_BASE_URL", self.twilio_api_base_url),
                ("WCE_TWILIO_CONTENT_BASE_URL", self.twilio_content_base_url),
            )
        ]
        for name, url, allowed, allow_name in checks:
            reason = insecure_url_reason(url)
            if reason and not allowed:
                raise ValueError(
                    f"{name} {reason}; outside development it must be a public https URL"
                    f" (WCE_ALLOW_INSECURE_{allow_name}=true allows it on a closed test installation)"
                )


@lru_cache
def get_settings() -> Settings:
    return Settings()


class ConsoleSettings(BaseSettings):
    """The web console's settings (services/console). It is given none of the engine's secrets —
    no database, broker, encryption key or operator token — so it has settings of its own rather
    than the engine's, which refuse to start without those outside development."""

    model_config = SettingsConfigDict(
        env_prefix="WCE_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    http_host: str = "127.0.0.1"
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_bulk_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # Its port, and the public APIs it calls for the signed-in tenant or operator.
    console_port: int = 8004
    console_api_url: str = "http://127.0.0.1:8000"
    console_tracker_url: str = "http://127.0.0.1:8001"
    # The session cookie: sealed with these Fernet keys (newest first; older ones still open
    # cookies), marked Secure unless switched off for a plain-HTTP console on 127.0.0.1.
    console_session_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEVELOPMENT_CONSOLE_SESSION_KEY]
    )
    console_cookie_secure: bool = True
    console_session_max_age_s: int = Field(default=8 * 3600, gt=0, le=30 * 24 * 3600)
    console_api_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("trusted_proxies", "console_session_keys", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @model_validator(mode="after")
    def _refuse_unsafe_sessions(self) -> ConsoleSettings:
        if not self.console_session_keys:
            raise ValueError("WCE_CONSOLE_SESSION_KEYS needs at least one key")
        # Anyone could seal a session with the public development key.
        if self.environment != "development" and DEVELOPMENT_CONSOLE_SESSION_KEY in self.console_session_keys:
            raise ValueError("WCE_CONSOLE_SESSION_KEYS must be set outside development")
        # A sealed credential sent over plain HTTP can be replayed by anyone on the path.
        if self.environment == "production" and not self.console_cookie_secure:
            raise ValueError("WCE_CONSOLE_COOKIE_SECURE=false is refused in production")
        return self
