"""Settings from the environment (prefix ``WCE_``), one object for every service.

Outside development the settings refuse the unsafe defaults that make a local run easy:
the well-known development encryption key and operator token.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A valid Fernet key that is public on purpose: it only ever protects development data.
DEVELOPMENT_ENCRYPTION_KEY = "ZGV2ZWxvcG1lbnQta2V5LW5vdC1mb3ItcHJvZC0zMmI="
DEVELOPMENT_OPERATOR_TOKEN = "dev-operator-token"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WCE_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"

    database_url: str = "postgresql://postgres@127.0.0.1:5432/wce"
    db_pool_min: int = 2
    db_pool_max: int = 10
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    broker_publish_timeout_s: float = 10.0
    startup_retry_s: float = 60.0

    # Newest key first; older keys still decrypt, so keys rotate without downtime.
    encryption_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEVELOPMENT_ENCRYPTION_KEY]
    )
    operator_token: str = DEVELOPMENT_OPERATOR_TOKEN

    twilio_api_base_url: str = "http://127.0.0.1:8010"
    twilio_content_base_url: str = "http://127.0.0.1:8010"
    twilio_timeout_s: float = 10.0
    twilio_max_connections: int = 200
    # Idle keep-alive connections to Twilio are closed after this, before a server closes them.
    twilio_max_idle_s: float = 4.0
    # Public URL Twilio uses to reach the tracker (status callbacks, inbound messages).
    public_base_url: str = "http://127.0.0.1:8001"

    segmenter_port: int = 8000
    tracker_port: int = 8001
    dispatcher_port: int = 8002
    sender_port: int = 8003
    http_host: str = "127.0.0.1"

    default_rate_per_second: int = 80
    chunk_size: int = 20
    # Spacing margin that keeps send starts below the rate despite timer and network jitter.
    throttle_margin: float = 0.015
    dispatch_lead_s: float = 0.25
    late_tolerance_s: float = 0.008
    publish_batch_size: int = 500

    sender_concurrency: int = 256
    sender_prefetch: int = 64
    max_attempts: int = 6
    retry_tiers_s: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [5, 30, 120, 600, 1800])
    lease_s: float = 60.0
    reconcile_after_s: float = 30.0
    sweep_idle_s: float = 30.0
    error_rate_threshold: float = 0.2
    error_rate_window: int = 200
    error_rate_min_attempts: int = 50

    credits_enabled: bool = True

    callback_batch_size: int = 500
    # A status is visible at most this much later; longer waits make fuller batches, and each
    # batch costs the tracker and the database a fixed set of statements.
    callback_flush_s: float = 0.2
    event_retention_days: int = 90
    # How often kept (orphan) callbacks are matched against newly recorded message SIDs.
    orphan_match_interval_s: float = 1.0
    # How often queue depths and running-campaign progress are sampled into metrics.
    metrics_sample_interval_s: float = 5.0

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

    @field_validator("encryption_keys", "retry_tiers_s", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.environment == "production":
            if DEVELOPMENT_ENCRYPTION_KEY in self.encryption_keys:
                raise ValueError("WCE_ENCRYPTION_KEYS must be set outside development")
            if self.operator_token == DEVELOPMENT_OPERATOR_TOKEN:
                raise ValueError("WCE_OPERATOR_TOKEN must be set outside development")
        if not self.encryption_keys:
            raise ValueError("WCE_ENCRYPTION_KEYS needs at least one key")
        if sorted(self.retry_tiers_s) != self.retry_tiers_s:
            raise ValueError("WCE_RETRY_TIERS_S must be ascending")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
