"""Booking rows as clients send them (bulk API, broker events, CSV), identified by external ids.

Every id a client uses — of a customer, an appointment, a service, a location, a staff member —
is the client's own external id; internal ids never leave the database.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.validation import Text, Timestamp

MAX_BATCH = 10_000

ExternalId = Annotated[str, Text(200, min_length=1)]


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_id: ExternalId


class CustomerRow(Row):
    first_name: Annotated[str, Text(200)] = ""
    last_name: Annotated[str, Text(200)] = ""
    email: Annotated[str, Text(320)] | None = None
    phone: Annotated[str, Text(64)] | None = Field(
        default=None, description="Any common format; normalised to E.164 with the tenant's default region."
    )


class NamedRow(Row):
    name: Annotated[str, Text(200, min_length=1)]


class ServiceRow(NamedRow):
    pass


class StaffRow(NamedRow):
    pass


class LocationRow(NamedRow):
    address: Annotated[str, Text(500)] | None = None


class AppointmentRow(Row):
    customer_id: ExternalId
    service_id: ExternalId | None = None
    location_id: ExternalId | None = None
    staff_id: ExternalId | None = None
    starts_at: Timestamp
    ends_at: Timestamp | None = None
    created_at: Timestamp = Field(description="When the appointment was booked.")
    status: Annotated[str, Text(64, min_length=1)] = Field(
        description="Built-in or one of the tenant's custom statuses."
    )
    status_changed_at: Timestamp | None = Field(
        default=None,
        description=(
            "When the appointment got its current status. When absent: kept from before if the status is "
            "unchanged, else `updated_at`, else the time of the write."
        ),
    )
    updated_at: Timestamp | None = None

    @field_validator("service_id", "location_id", "staff_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value


class StatusRow(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, Text(64, min_length=1, pattern=r"^[a-z0-9_\-]+$")]
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

    @property
    def written(self) -> int:
        return self.inserted + self.updated


class DeleteResult(BaseModel):
    deleted: int
    not_found: list[ExternalId]


class StatusOut(BaseModel):
    name: str
    counts_as_cancelled: bool
    built_in: bool
