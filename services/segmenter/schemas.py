"""Request and response bodies of the segmenter's HTTP API (unknown fields are refused)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from services.segmenter.audience.model import Audience
from services.segmenter.template_check import TemplateWarning
from shared.phones import InvalidPhone, is_valid_region, to_e164
from shared.sending_window import DAY_NAMES
from shared.validation import Text

ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _check_e164(value: str) -> str:
    try:
        return to_e164(value, "US")
    except InvalidPhone as exc:
        raise ValueError(str(exc)) from exc


# Lengths of the free-text fields; every one that reaches the database has a maximum.
PhoneText = Annotated[str, Text(40)]
Keyword = Annotated[str, Text(64)]
LOCALE_PATTERN = r"^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8})*$"
MAX_CREDITS = 100_000_000


class CreditsSetup(Strict):
    plan_monthly: int = Field(default=0, ge=0, le=MAX_CREDITS, strict=True)
    purchased: int = Field(default=0, ge=0, le=MAX_CREDITS, strict=True)


class FrequencyCap(Strict):
    """At most ``messages`` marketing messages per number in any ``days`` days, across campaigns.
    Test and manual sends are exempt (neither capped nor counted)."""

    messages: int = Field(ge=1, le=1000, strict=True, description="Most marketing messages per number.")
    days: int = Field(ge=1, le=365, strict=True, description="In any window of this many days.")


class TenantProfile(Strict):
    """Settings of a tenant that the tenant and the operator may both change."""

    timezone: Annotated[str, Text(64)] | None = None
    default_region: Annotated[str, Text(2)] | None = None
    locale: Annotated[str, Text(35, pattern=LOCALE_PATTERN)] | None = None
    business_name: Annotated[str, Text(200)] | None = None
    whatsapp_from: PhoneText | None = None
    messaging_service_sid: Annotated[str, Text(34)] | None = None
    twilio_account_sid: Annotated[str, Text(34)] | None = None
    twilio_auth_token: Annotated[str, Text(256, min_length=8)] | None = None
    test_numbers: list[PhoneText] | None = Field(default=None, max_length=50)
    opt_out_keywords: list[Keyword] | None = Field(default=None, max_length=100)
    opt_in_keywords: list[Keyword] | None = Field(default=None, max_length=100)
    frequency_cap: FrequencyCap | None = Field(
        default=None,
        description=(
            "At most `messages` marketing messages per number in any `days` days, across campaigns,"
            " enforced when each message is about to be sent (recipients past it end `skipped`"
            " with reason `frequency_capped`); test and manual sends are exempt. `null` removes it."
        ),
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _check_timezone(value)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_region(value):
            raise ValueError(f"unknown region {value!r} (ISO 3166 alpha-2 expected)")
        return None if value is None else value.upper()

    @field_validator("whatsapp_from")
    @classmethod
    def _from(cls, value: str | None) -> str | None:
        return None if value is None else _check_e164(value)

    @field_validator("test_numbers")
    @classmethod
    def _tests(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_check_e164(v) for v in value]

    @field_validator("twilio_account_sid")
    @classmethod
    def _sid(cls, value: str | None) -> str | None:
        if value is not None and not ACCOUNT_SID.match(value):
            raise ValueError("must look like AC followed by 32 hex digits")
        return value

    @field_validator("messaging_service_sid")
    @classmethod
    def _mg(cls, value: str | None) -> str | None:
        if value is not None and not MESSAGING_SERVICE_SID.match(value):
            raise ValueError("must look like MG followed by 32 hex digits")
        return value

    @field_validator("opt_out_keywords", "opt_in_keywords")
    @classmethod
    def _keywords(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted({v.strip().upper() for v in value if v.strip()})


OPERATOR_ONLY = (
    "set by the operator only (it must match the MPS of the tenant's Twilio sender); ask your operator"
)


MESSAGING_LIMIT_OPERATOR_ONLY = (
    "set by the operator only (it must match the messaging limit Meta gives the tenant's WhatsApp"
    " sender); ask your operator"
)
# WhatsApp's messaging-limit tiers: unique numbers a sender may start conversations with in a
# moving 24 hours. 2,000 is Meta's current second tier, 1,000 the older scheme's first.
MessagingLimit = Literal[250, 1000, 2000, 10000, 100000, "unlimited"]


class TenantSettingsUpdate(TenantProfile):
    """What a tenant may change about itself. Its rate and messaging limit are the operator's
    settings: a request that names ``rate_per_second``, ``unlimited_rate`` or ``messaging_limit``
    is refused, naming the field."""

    rate_per_second: None = Field(default=None, description=OPERATOR_ONLY)
    unlimited_rate: None = Field(default=None, description=OPERATOR_ONLY)
    messaging_limit: None = Field(default=None, description=MESSAGING_LIMIT_OPERATOR_ONLY)

    @field_validator("rate_per_second", "unlimited_rate", mode="before")
    @classmethod
    def _operator_only(cls, value: object) -> None:
        raise ValueError(OPERATOR_ONLY)

    @field_validator("messaging_limit", mode="before")
    @classmethod
    def _limit_operator_only(cls, value: object) -> None:
        raise ValueError(MESSAGING_LIMIT_OPERATOR_ONLY)


class OperatorTenantUpdate(TenantProfile):
    """What the operator may change about a tenant, its rate and messaging limit included."""

    rate_per_second: int | None = Field(default=None, gt=0, le=10_000, strict=True)
    unlimited_rate: bool | None = Field(default=None, strict=True)
    messaging_limit: MessagingLimit | None = Field(
        default=None,
        description=(
            "WhatsApp messaging limit of the tenant's sender: unique numbers it may message in a"
            ' moving 24 hours (250, 1000, 2000, 10000, 100000) or "unlimited". A campaign that'
            " would pass it is held until the window has room."
        ),
    )

    def messaging_limit_value(self) -> int | None:
        """The limit to store (None: unlimited); only when ``messaging_limit`` was given."""
        return None if self.messaging_limit in (None, "unlimited") else int(self.messaging_limit)


class TenantCreate(OperatorTenantUpdate):
    name: Annotated[str, Text(200, min_length=1)]
    twilio_account_sid: Annotated[str, Text(34)]  # type: ignore[assignment]
    twilio_auth_token: Annotated[str, Text(256, min_length=8)]  # type: ignore[assignment]
    whatsapp_from: PhoneText  # type: ignore[assignment]
    timezone: Annotated[str, Text(64)] = "UTC"  # type: ignore[assignment]
    default_region: Annotated[str, Text(2)] = "US"  # type: ignore[assignment]
    locale: Annotated[str, Text(35, pattern=LOCALE_PATTERN)] = (  # type: ignore[assignment]
        "en_US"
    )
    credits: CreditsSetup = Field(default_factory=CreditsSetup)


class TenantOut(BaseModel):
    id: UUID
    name: str
    twilio_account_sid: str
    whatsapp_from: str
    messaging_service_sid: str | None
    rate_per_second: int | None
    messaging_limit: int | None = Field(
        default=None, description="Unique numbers per moving 24 hours (null: unlimited)."
    )
    timezone: str
    default_region: str
    locale: str
    business_name: str | None
    test_numbers: list[str]
    opt_out_keywords: list[str]
    opt_in_keywords: list[str]
    frequency_cap: FrequencyCap | None
    active: bool
    created_at: datetime
    sending_window: dict[str, Any] | None = None
    status_callback_url: str
    inbound_url: str


class TenantSummary(BaseModel):
    """A tenant as the operator's list shows it."""

    id: UUID
    name: str
    active: bool
    rate_per_second: int | None = Field(description="Messages per second (null: unlimited).")
    messaging_limit: int | None = Field(description="Unique numbers per moving 24 hours (null: unlimited).")
    credits_available: int | None = Field(
        description="Plan and purchased credits less those reserved by sends under way (a new month's"
        " plan grant counted); null for a tenant without a credit account."
    )
    created_at: datetime


class TenantPage(BaseModel):
    items: list[TenantSummary]
    next_before: datetime | None = Field(
        description="Pass as `before`, with `next_before_id` as `before_id`, for the next page;"
        " null on the last."
    )
    next_before_id: UUID | None


class TenantCreated(BaseModel):
    tenant: TenantOut
    api_key: str = Field(description="Shown once; only its hash is stored.")


class BodyTemplate(Strict):
    body: Annotated[str, Text(1600, min_length=1)]


class ContentTemplate(Strict):
    content_sid: Annotated[str, Text(34)]
    variables: dict[Annotated[str, Text(64)], Annotated[str, Text(1024)]] = Field(
        default_factory=dict, max_length=100
    )

    @field_validator("content_sid")
    @classmethod
    def _sid(cls, value: str) -> str:
        if not CONTENT_SID.match(value):
            raise ValueError("must look like HX followed by 32 hex digits")
        return value


class ScheduleIn(Strict):
    """When to start: a local date and time (``2026-12-24T09:00``) in ``timezone`` — an IANA zone,
    the tenant's by default — or an instant with its UTC offset."""

    at: datetime
    timezone: Annotated[str, Text(64)] | None = None


class CampaignCreate(Strict):
    name: Annotated[str, Text(200, min_length=1)]
    audience: Audience = Field(default_factory=Audience)
    template: BodyTemplate | ContentTemplate
    start: bool = Field(default=False, strict=True)
    schedule: ScheduleIn | None = Field(
        default=None, description="Start at this time instead of now (the audience is taken then)."
    )

    @field_validator("schedule")
    @classmethod
    def _start_or_schedule(cls, value: ScheduleIn | None, info: ValidationInfo) -> ScheduleIn | None:
        if value is not None and info.data.get("start"):
            raise ValueError("give either start: true or a schedule, not both")
        return value

    @model_validator(mode="before")
    @classmethod
    def _template_kind(cls, data: Any) -> Any:
        # Choose the template model from its keys so an error names the right fields.
        if isinstance(data, dict) and isinstance(data.get("template"), dict):
            template = data["template"]
            if "content_sid" in template and "body" in template:
                raise ValueError("template: give either body or content_sid, not both")
        return data


CampaignState = Literal[
    "draft", "scheduled", "snapshotting", "running", "paused", "completed", "cancelled", "failed"
]
CampaignKind = Literal["campaign", "test", "manual"]


class CampaignOut(BaseModel):
    id: UUID
    name: str
    kind: str
    state: str
    pause_reason: str | None
    audience: dict[str, Any]
    template: dict[str, Any]
    total: int
    created_at: datetime
    started_at: datetime | None
    paused_at: datetime | None
    completed_at: datetime | None
    scheduled_at: datetime | None = Field(description="When a scheduled campaign starts.")
    schedule_timezone: str | None = Field(description="The zone its time was given in.")
    hold_reason: str | None = Field(
        description="Why a running campaign sends nothing now: `sending_window` (outside the tenant's"
        " sending window), `messaging_limit` (the tenant's WhatsApp messaging limit is reached) or"
        " `spam_rate_limit` (WhatsApp refused the sender for spam, 131048)."
    )
    hold_until: datetime | None = Field(
        description="When the hold ends (the window opens, the messaging limit has room, the spam hold ends)."
    )
    warnings: list[TemplateWarning] = Field(
        default_factory=list,
        description=(
            "In the answer to a campaign's creation: recipients of its audience the template renders"
            " empty or past WhatsApp's limits for (they will fail without being sent)."
        ),
    )

    @computed_field(  # type: ignore[prop-decorator]
        description=(
            "True for test and manual sends: the tenant's frequency cap neither holds them back nor"
            " counts them."
        )
    )
    @property
    def frequency_cap_exempt(self) -> bool:
        return self.kind != "campaign"


class CampaignAction(Strict):
    reason: Annotated[str, Text(200)] | None = None


DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
HOUR_MINUTE = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class SendingWindowIn(Strict):
    """When campaigns may send: on ``days``, from ``start`` until ``end`` (``HH:MM``, local time in
    the tenant's zone; ``end`` may be ``24:00``). With ``recipient_timezone``, a recipient whose
    number's country has a single time zone gets the window in that zone instead."""

    days: list[DayName] = Field(min_length=1, max_length=7)
    start: Annotated[str, Text(5, pattern=HOUR_MINUTE)]
    end: Annotated[str, Text(5, pattern=HOUR_MINUTE + "|^24:00$")]
    recipient_timezone: bool = Field(default=False, strict=True)

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each day at most once")
        return sorted(value, key=DAY_NAMES.index)

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: str, info: ValidationInfo) -> str:
        start = info.data.get("start")
        if start is not None and value != "24:00" and value <= start:
            raise ValueError("must be after start (a window ends on the day it starts)")
        return value


class SendingWindowOut(BaseModel):
    window: dict[str, Any] | None = Field(description="The window; null: campaigns send at any time.")
    timezone: str
    open_now: bool
    next_opening: datetime | None = Field(description="When it next opens (null while open).")
    next_closing: datetime | None = Field(description="When it next closes (null without a window).")
