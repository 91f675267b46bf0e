"""Payloads that cross the broker: versioned Pydantic models, validated by every consumer.

Each model names its AMQP ``type`` (``<name>.v<version>``); a consumer that receives a body its
model rejects parks the message with the validation error as the reason.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, get_args
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.validation import Int8, JsonObject, Text, Timestamp


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "event"
    VERSION: ClassVar[int] = 1
    v: int = Field(default=1, strict=True)

    @classmethod
    def message_type(cls) -> str:
        return f"{cls.TYPE}.v{cls.VERSION}"

    @field_validator("v")
    @classmethod
    def _known_version(cls, value: int) -> int:
        # A body of another version is refused (and so parked with this reason), never read as
        # this one: its fields may mean something else.
        if value != cls.VERSION:
            raise ValueError(
                f"unsupported version {value}: this engine reads {cls.TYPE} version {cls.VERSION}"
            )
        return value

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


class RecipientBatch(Event):
    """Recipients of one campaign to pass through the tenant's throttle (segmenter, retry tiers)."""

    TYPE: ClassVar[str] = "recipients.batch"
    tenant_id: UUID
    campaign_id: UUID
    recipient_ids: list[Int8] = Field(min_length=1, max_length=10_000)


class SendChunk(Event):
    """Recipients cleared by the throttle; message i may start at ``first_slot_at + i * interval_s``.

    ``first_slot_at`` is an epoch time; ``None`` means the tenant has no rate limit.
    """

    TYPE: ClassVar[str] = "send.chunk"
    tenant_id: UUID
    campaign_id: UUID
    recipient_ids: list[Int8] = Field(min_length=1, max_length=10_000)
    first_slot_at: float | None = None
    interval_s: float = Field(default=0.0, ge=0.0)
    # How late after its slot a message may still start (the dispatcher's, which spaced the
    # slots for it); None: the sender's configured tolerance.
    late_tolerance_s: float | None = Field(default=None, ge=0.0, le=1.0)

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


LifecycleName = Literal["started", "paused", "resumed", "completed", "cancelled", "held", "released"]


class CampaignLifecycle(Event):
    """Published on ``campaign.<event>`` for anyone to follow; dispatchers and senders gate on it."""

    TYPE: ClassVar[str] = "campaign.lifecycle"
    event: LifecycleName
    tenant_id: UUID
    campaign_id: UUID
    state: str
    reason: str | None = None
    at: datetime
    # ``held``: the campaign stays ``running`` but sends nothing (``reason``: why, e.g.
    # ``sending_window``) until ``until`` (None when not known); ``released``: it sends again.
    until: datetime | None = None

    # The keys lifecycle events are published on: followers bind these, not campaign.*, which
    # also carries the answers to campaign requests (campaign.accepted, campaign.rejected).
    ROUTING_KEYS: ClassVar[tuple[str, ...]] = tuple(f"campaign.{name}" for name in get_args(LifecycleName))

    def routing_key(self) -> str:
        return f"campaign.{self.event}"

    @property
    def gate_state(self) -> str:
        """The state senders and dispatchers gate on: a held campaign is ``held``, not ``running``,
        unless the hold stops nothing there (the claims of a campaign at its tenant's messaging
        limit send the numbers already counted and leave the others)."""
        return HELD if self.event == "held" and self.reason not in SOFT_HOLDS else self.state


# What senders and dispatchers read for a running campaign that holds (shared/events.py).
HELD = "held"
# Holds the claim itself enforces, number by number: dispatchers and senders carry on.
SOFT_HOLDS = frozenset({"messaging_limit"})


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
    reason: Annotated[str, Text(200)] | None = None


def decode(model: type[Event], body: bytes) -> Any:
    return model.model_validate_json(body)


class ChunkDone(Event):
    """A sender finished a ``SendChunk``: sent to the reply queue named in the chunk's headers, so
    the dispatcher that handed it out can bound how many chunks of a tenant are in flight.

    ``late_ids`` are recipients of a rate-limited chunk left without a slot (the sender came too
    late for the chunk's last slots): the dispatcher gives them the tenant's next free slots at
    once, instead of their going back behind the rest of the campaign in the dispatch queue."""

    TYPE: ClassVar[str] = "send.chunk_done"
    tenant_id: UUID
    chunk_id: str
    campaign_id: UUID | None = None
    late_ids: list[Int8] = Field(default_factory=list, max_length=10_000)
    # A rate-limited chunk's timing, reported when it ran late: how long after its first slot
    # the sender was ready to send it, and how late its messages woke for their slots (the
    # dispatcher stretches its lead and tolerance to match: shared/throttle.AdaptiveTiming).
    arrived_late_s: float = Field(default=0.0, ge=0.0, le=3600.0)
    woke_late_s: float = Field(default=0.0, ge=0.0, le=3600.0)

    # Headers of a SendChunk that asks for this acknowledgement.
    REPLY_HEADER: ClassVar[str] = "x-reply-to"
    CHUNK_HEADER: ClassVar[str] = "x-chunk-id"


# Booking data from other systems (exchange ``wce.booking``, routing key = TYPE) ----------------
# Ids are the publisher's own external ids. Upserts replace the whole record; replaying an event
# is harmless. Events of one tenant are applied in the order they arrive.


class BookingCustomerUpserted(Event):
    TYPE: ClassVar[str] = "booking.customer.upserted"
    tenant_id: UUID
    external_id: Annotated[str, Text(200, min_length=1)]
    first_name: Annotated[str, Text(200)] = ""
    last_name: Annotated[str, Text(200)] = ""
    email: Annotated[str, Text(320)] | None = None
    # Normalised to E.164 with the tenant's default region; an unparseable phone is kept, flagged.
    phone: Annotated[str, Text(64)] | None = None


class BookingCustomerDeleted(Event):
    TYPE: ClassVar[str] = "booking.customer.deleted"
    tenant_id: UUID
    external_id: Annotated[str, Text(200, min_length=1)]


class BookingAppointmentUpserted(Event):
    TYPE: ClassVar[str] = "booking.appointment.upserted"
    tenant_id: UUID
    external_id: Annotated[str, Text(200, min_length=1)]
    customer_id: Annotated[str, Text(200, min_length=1)]
    service_id: Annotated[str, Text(200)] | None = None
    location_id: Annotated[str, Text(200)] | None = None
    staff_id: Annotated[str, Text(200)] | None = None
    starts_at: Timestamp
    ends_at: Timestamp | None = None
    created_at: Timestamp
    status: Annotated[str, Text(64, min_length=1)]
    status_changed_at: Timestamp | None = None
    updated_at: Timestamp | None = None


class BookingAppointmentDeleted(Event):
    TYPE: ClassVar[str] = "booking.appointment.deleted"
    tenant_id: UUID
    external_id: Annotated[str, Text(200, min_length=1)]


class BookingServiceUpserted(Event):
    TYPE: ClassVar[str] = "booking.service.upserted"
    tenant_id: UUID
    external_id: Annotated[str, Text(200, min_length=1)]
    name: Annotated[str, Text(200, min_length=1)]


class BookingLocationUpserted(Event):
    TYPE: ClassVar[str] = "booking.location.upserted"
    tenant_id: UUID
    external_id: Annotated[str, Text(200, min_length=1)]
    name: Annotated[str, Text(200, min_length=1)]
    address: Annotated[str, Text(500)] | None = None


class BookingStaffUpserted(Event):
    TYPE: ClassVar[str] = "booking.staff.upserted"
    tenant_id: UUID
    external_id: Annotated[str, Text(200, min_length=1)]
    name: Annotated[str, Text(200, min_length=1)]


BOOKING_EVENTS: tuple[type[Event], ...] = (
    BookingCustomerUpserted,
    BookingCustomerDeleted,
    BookingAppointmentUpserted,
    BookingAppointmentDeleted,
    BookingServiceUpserted,
    BookingLocationUpserted,
    BookingStaffUpserted,
)


# Campaign requests from other systems (``wce.commands``, key ``campaign.requested``) and their
# outcome (``wce.events``, keys ``campaign.accepted`` / ``campaign.rejected``) ---------------------


class CampaignRequested(Event):
    """Create and start a campaign, exactly once per (tenant, idempotency key).

    ``audience`` and ``template`` take the same bodies as the HTTP API's campaign creation; their
    errors come back in ``campaign.rejected`` with the same field names.
    """

    TYPE: ClassVar[str] = "campaign.requested"
    ROUTING_KEY: ClassVar[str] = "campaign.requested"
    tenant_id: UUID
    idempotency_key: Annotated[str, Text(200, min_length=1)]
    name: Annotated[str, Text(200, min_length=1)]
    audience: JsonObject = Field(default_factory=dict)
    template: JsonObject
    options: JsonObject = Field(default_factory=dict)


class CampaignSchedule(BaseModel):
    """When a requested campaign starts: ``at`` is a local date and time in ``timezone`` (an IANA
    zone; default the tenant's), or an instant with its UTC offset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    timezone: Annotated[str, Text(64)] | None = None


class CampaignRequestedV2(CampaignRequested):
    """Version 2 of ``campaign.requested``: as version 1, plus an optional ``schedule``. Without
    one the campaign starts at once; with one it waits, scheduled, and its audience is taken when
    it starts. A schedule in the past or in an unknown zone is rejected naming ``schedule.at`` or
    ``schedule.timezone``."""

    VERSION: ClassVar[int] = 2
    v: int = Field(default=2, strict=True)
    schedule: CampaignSchedule | None = None


class CampaignRequestKey(BaseModel):
    """What a reply needs: enough of a request to say which one was rejected."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: UUID
    idempotency_key: Annotated[str, Text(200, min_length=1)]
    # Which version's model reads the rest (a value no model reads is rejected by version 1's).
    v: Any = 1


class CampaignAccepted(Event):
    TYPE: ClassVar[str] = "campaign.accepted"
    ROUTING_KEY: ClassVar[str] = "campaign.accepted"
    tenant_id: UUID
    idempotency_key: str
    campaign_id: UUID
    state: str


class RejectionReason(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    message: str


class CampaignRejected(Event):
    TYPE: ClassVar[str] = "campaign.rejected"
    ROUTING_KEY: ClassVar[str] = "campaign.rejected"
    tenant_id: UUID
    idempotency_key: str
    reasons: list[RejectionReason]


class StatusCallbackBatch(Event):
    """Status callbacks accepted together by one tracker process (signatures already checked).

    The webhook groups the callbacks that arrive while its previous publish awaits the broker's
    confirm, so at high rates one persistent message and one confirm carry hundreds of them.
    """

    TYPE: ClassVar[str] = "twilio.status.batch"
    callbacks: list[StatusCallback] = Field(min_length=1, max_length=10_000)
