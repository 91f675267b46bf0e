"""Booking rows as clients send them (bulk API, broker events, CSV), identified by external ids.

Every id a client uses — of a customer, an appointment, a service, a location, a staff member —
is the client's own external id; internal ids never leave the database.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

MAX_BATCH = 10_000

ExternalId = str


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_id: ExternalId = Field(min_length=1, max_length=200)


class CustomerRow(Row):
    first_name: str = Field(default="", max_length=200)
    last_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(
        default=None,
        max_length=64,
        description="Any common format; normalised to E.164 with the tenant's default region.",
    )


class NamedRow(Row):
    name: str = Field(min_length=1, max_length=200)


class ServiceRow(NamedRow):
    pass


class StaffRow(NamedRow):
    pass


class LocationRow(NamedRow):
    address: str | None = Field(default=None, max_length=500)


class AppointmentRow(Row):
    customer_id: ExternalId = Field(min_length=1, max_length=200)
    service_id: ExternalId | None = Field(default=None, max_length=200)
    location_id: ExternalId | None = Field(default=None, max_length=200)
    staff_id: ExternalId | None = Field(default=None, max_length=200)
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    created_at: AwareDatetime = Field(description="When the appointment was booked.")
    status: str = Field(
        min_length=1, max_length=64, description="Built-in or one of the tenant's custom statuses."
    )
    status_changed_at: AwareDatetime | None = Field(
        default=None,
        description=(
            "When the appointment got its current status. When absent: kept from before if the status is "
            "unchanged, else `updated_at`, else the time of the write."
        ),
    )
    updated_at: AwareDatetime | None = None

    @field_validator("service_id", "location_id", "staff_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value


class StatusRow(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")
    counts_as_cancelled: bool


InvalidPhones = Literal["reject", "flag"]


class CustomersUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[CustomerRow] = Field(min_length=1, max_length=MAX_BATCH)
    invalid_phones: InvalidPhones = Field(
        default="reject",
        description=(
            "reject: a phone that is present but cannot be parsed as a valid number rejects the whole "
            "request (422 naming the row). flag: the customer is kept with its raw phone and no E.164 "
            "number; audiences count it as 'no valid phone' and never message it."
        ),
    )


class AppointmentsUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[AppointmentRow] = Field(min_length=1, max_length=MAX_BATCH)


class ServicesUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[ServiceRow] = Field(min_length=1, max_length=MAX_BATCH)


class LocationsUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[LocationRow] = Field(min_length=1, max_length=MAX_BATCH)


class StaffUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[StaffRow] = Field(min_length=1, max_length=MAX_BATCH)


class StatusesUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statuses: list[StatusRow] = Field(min_length=1, max_length=100)


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_ids: list[ExternalId] = Field(min_length=1, max_length=MAX_BATCH)


class RowIssue(BaseModel):
    row: int = Field(description="0-based index in `rows` (CSV import: the line number).")
    field: str
    message: str


class UpsertResult(BaseModel):
    inserted: int
    updated: int
    flagged: list[RowIssue] = Field(default_factory=list, description="Rows kept with an unusable phone.")


class DeleteResult(BaseModel):
    deleted: int
    not_found: list[ExternalId]


class StatusOut(BaseModel):
    name: str
    counts_as_cancelled: bool
    built_in: bool
