"""Payloads that cross the broker: versioned Pydantic models, validated by every consumer.

Each model names its AMQP ``type`` (``<name>.v<version>``); a consumer that receives a body its
model rejects parks the message with the validation error as the reason.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "event"
    VERSION: ClassVar[int] = 1
    v: int = 1

    @classmethod
    def message_type(cls) -> str:
        return f"{cls.TYPE}.v{cls.VERSION}"

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


class RecipientBatch(Event):
    """Recipients of one campaign to pass through the tenant's throttle (segmenter, retry tiers)."""

    TYPE: ClassVar[str] = "recipients.batch"
    tenant_id: UUID
    campaign_id: UUID
    recipient_ids: list[int] = Field(min_length=1, max_length=10_000)


class SendChunk(Event):
    """Recipients cleared by the throttle; message i may start at ``first_slot_at + i * interval_s``.

    ``first_slot_at`` is an epoch time; ``None`` means the tenant has no rate limit.
    """

    TYPE: ClassVar[str] = "send.chunk"
    tenant_id: UUID
    campaign_id: UUID
    recipient_ids: list[int] = Field(min_length=1, max_length=10_000)
    first_slot_at: float | None = None
    interval_s: float = Field(default=0.0, ge=0.0)

    def slot_at(self, index: int) -> float | None:
        if self.first_slot_at is None:
            return None
        return self.first_slot_at + index * self.interval_s


class StatusCallback(Event):
    """A status callback accepted by the tracker's webhook (signature already checked)."""

    TYPE: ClassVar[str] = "twilio.status"
    tenant_id: UUID
    params: dict[str, str]
    idempotency_token: str | None = None
    received_at: float = Field(default_factory=time.time)


class InboundMessage(Event):
    """An inbound WhatsApp message accepted by the tracker's webhook (signature already checked)."""

    TYPE: ClassVar[str] = "twilio.inbound"
    tenant_id: UUID
    params: dict[str, str]
    received_at: float = Field(default_factory=time.time)


LifecycleName = Literal["started", "paused", "resumed", "completed", "cancelled"]


class CampaignLifecycle(Event):
    """Published on ``campaign.<event>`` for anyone to follow; dispatchers and senders gate on it."""

    TYPE: ClassVar[str] = "campaign.lifecycle"
    event: LifecycleName
    tenant_id: UUID
    campaign_id: UUID
    state: str
    reason: str | None = None
    at: datetime

    def routing_key(self) -> str:
        return f"campaign.{self.event}"


class TenantChanged(Event):
    """Published on ``tenant.changed`` when a tenant is created or its sending settings change."""

    TYPE: ClassVar[str] = "tenant.changed"
    tenant_id: UUID
    rate_per_second: int | None
    active: bool = True

    ROUTING_KEY: ClassVar[str] = "tenant.changed"


class CampaignCommand(Event):
    """``campaign.pause|resume|cancel`` commands from other systems (same effect as the HTTP API)."""

    TYPE: ClassVar[str] = "campaign.command"
    tenant_id: UUID
    campaign_id: UUID
    reason: str | None = None


def decode(model: type[Event], body: bytes) -> Any:
    return model.model_validate_json(body)


class ChunkDone(Event):
    """A sender finished a ``SendChunk``: sent to the reply queue named in the chunk's headers, so
    the dispatcher that handed it out can bound how many chunks of a tenant are in flight."""

    TYPE: ClassVar[str] = "send.chunk_done"
    tenant_id: UUID
    chunk_id: str

    # Headers of a SendChunk that asks for this acknowledgement.
    REPLY_HEADER: ClassVar[str] = "x-reply-to"
    CHUNK_HEADER: ClassVar[str] = "x-chunk-id"
