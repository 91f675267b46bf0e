"""Request and response bodies of the segmenter's HTTP API (unknown fields are refused)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.segmenter.audience.model import Audience
from shared.phones import InvalidPhone, is_valid_region, to_e164

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


class CreditsSetup(Strict):
    plan_monthly: int = Field(default=0, ge=0)
    purchased: int = Field(default=0, ge=0)


class TenantSettingsUpdate(Strict):
    """What a tenant may change about itself."""

    rate_per_second: int | None = Field(default=None, gt=0, le=10_000)
    unlimited_rate: bool | None = None
    timezone: str | None = None
    default_region: str | None = None
    locale: str | None = None
    business_name: str | None = None
    whatsapp_from: str | None = None
    messaging_service_sid: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = Field(default=None, min_length=8)
    test_numbers: list[str] | None = Field(default=None, max_length=50)
    opt_out_keywords: list[str] | None = Field(default=None, max_length=100)
    opt_in_keywords: list[str] | None = Field(default=None, max_length=100)

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


class TenantCreate(TenantSettingsUpdate):
    name: str = Field(min_length=1, max_length=200)
    twilio_account_sid: str  # type: ignore[assignment]
    twilio_auth_token: str = Field(min_length=8)  # type: ignore[assignment]
    whatsapp_from: str  # type: ignore[assignment]
    timezone: str = "UTC"  # type: ignore[assignment]
    default_region: str = "US"  # type: ignore[assignment]
    locale: str = "en_US"  # type: ignore[assignment]
    credits: CreditsSetup = Field(default_factory=CreditsSetup)


class TenantOut(BaseModel):
    id: UUID
    name: str
    twilio_account_sid: str
    whatsapp_from: str
    messaging_service_sid: str | None
    rate_per_second: int | None
    timezone: str
    default_region: str
    locale: str
    business_name: str | None
    test_numbers: list[str]
    opt_out_keywords: list[str]
    opt_in_keywords: list[str]
    active: bool
    created_at: datetime
    status_callback_url: str
    inbound_url: str


class TenantCreated(BaseModel):
    tenant: TenantOut
    api_key: str = Field(description="Shown once; only its hash is stored.")


class BodyTemplate(Strict):
    body: str = Field(min_length=1, max_length=1600)


class ContentTemplate(Strict):
    content_sid: str
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("content_sid")
    @classmethod
    def _sid(cls, value: str) -> str:
        if not CONTENT_SID.match(value):
            raise ValueError("must look like HX followed by 32 hex digits")
        return value


class CampaignCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    audience: Audience = Field(default_factory=Audience)
    template: BodyTemplate | ContentTemplate
    start: bool = False

    @model_validator(mode="before")
    @classmethod
    def _template_kind(cls, data: Any) -> Any:
        # Choose the template model from its keys so an error names the right fields.
        if isinstance(data, dict) and isinstance(data.get("template"), dict):
            template = data["template"]
            if "content_sid" in template and "body" in template:
                raise ValueError("template: give either body or content_sid, not both")
        return data


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


class CampaignAction(Strict):
    reason: str | None = Field(default=None, max_length=200)
