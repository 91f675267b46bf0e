"""Audience definitions as the API and the broker accept them (DESIGN §5).

An audience is one segment, its parameter (``days`` for the windowed segments, ``min_count`` for
``repeat``), appointment filters and ``exclude_suppressed``. A parameter that the chosen segment
does not take is refused rather than ignored, so a typo never silently widens an audience.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from shared.validation import Text

SegmentName = Literal[
    "recent_bookers",
    "upcoming",
    "first_time",
    "repeat",
    "lapsed",
    "cancelled_recent",
    "all_customers",
    "all_appointments",
]

# The default window of each windowed segment; any other whole number of days in range is allowed.
DEFAULT_DAYS: dict[str, int] = {"recent_bookers": 30, "upcoming": 7, "lapsed": 90, "cancelled_recent": 30}
MAX_DAYS = 3650
DEFAULT_REPEAT_MIN = 3
MAX_IDS = 1000

ExternalIdText = Annotated[str, Text(200)]
StatusText = Annotated[str, Text(64)]

BUILTIN_STATUSES = ("approved", "pending", "canceled", "rejected")
BUILTIN_CANCELLED = ("canceled", "rejected")

# The segments whose recipients carry an appointment for the appointment shortcodes.
APPOINTMENT_SEGMENTS = frozenset({"upcoming", "recent_bookers"})


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment: SegmentName = Field(
        default="all_customers",
        description=(
            "recent_bookers: booked (created_at) in [now − days, now]; upcoming: an appointment starts in "
            "[now, now + days), cancelled and rejected ones excluded unless `statuses` is given; first_time: "
            "exactly one appointment; repeat: at least `min_count`; lapsed: at least one appointment and the "
            "latest starts before now − days (an upcoming appointment, even a cancelled one, counts as "
            "later); "
            "cancelled_recent: an appointment whose status counts as cancelled got it in [now − days, now]; "
            "all_customers: every customer; all_appointments: at least one appointment. With appointment "
            "filters every rule looks at the matching appointments only."
        ),
    )
    days: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_DAYS,
        description=(
            "Window of recent_bookers (default 30), upcoming (7), lapsed (90) and cancelled_recent (30). "
            "'days ago' is the same local wall-clock time that many calendar days earlier in the tenant's "
            "time zone. Refused for the other segments."
        ),
    )
    min_count: int | None = Field(
        default=None,
        strict=True,
        ge=2,
        le=10_000,
        description="repeat only: the least number of appointments (default 3).",
    )
    service_ids: list[ExternalIdText] = Field(
        default_factory=list,
        max_length=MAX_IDS,
        description="Only appointments of these services (external ids).",
    )
    location_ids: list[ExternalIdText] = Field(
        default_factory=list,
        max_length=MAX_IDS,
        description="Only appointments at these locations (external ids).",
    )
    statuses: list[StatusText] = Field(
        default_factory=list,
        max_length=100,
        description="Only appointments with these statuses (built-in or the tenant's custom statuses).",
    )
    min_appointments: int | None = Field(
        default=None, strict=True, ge=1, le=10_000, description="At least this many matching appointments."
    )
    exclude_suppressed: bool = Field(
        default=True, strict=True, description="Leave out opted-out numbers already at preview and snapshot."
    )

    @field_validator("days")
    @classmethod
    def _days_fit_segment(cls, value: int | None, info: ValidationInfo) -> int | None:
        segment = info.data.get("segment")
        if value is not None and segment is not None and segment not in DEFAULT_DAYS:
            raise ValueError(f"segment {segment} takes no window")
        return value

    @field_validator("min_count")
    @classmethod
    def _min_count_fits_segment(cls, value: int | None, info: ValidationInfo) -> int | None:
        segment = info.data.get("segment")
        if value is not None and segment is not None and segment != "repeat":
            raise ValueError(f"only the repeat segment takes min_count, not {segment}")
        return value

    @field_validator("service_ids", "location_ids", "statuses")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @property
    def window_days(self) -> int | None:
        if self.segment not in DEFAULT_DAYS:
            return None
        return self.days if self.days is not None else DEFAULT_DAYS[self.segment]

    @property
    def repeat_min(self) -> int:
        return self.min_count if self.min_count is not None else DEFAULT_REPEAT_MIN

    @property
    def filters_appointments(self) -> bool:
        """Whether some appointments do not count (a service, location or status filter)."""
        return bool(self.service_ids or self.location_ids or self.statuses)

    @property
    def has_appointment_filters(self) -> bool:
        """Any filter at all: then a customer needs at least one matching appointment."""
        return self.filters_appointments or self.min_appointments is not None

    @property
    def provides_appointment(self) -> bool:
        return self.segment in APPOINTMENT_SEGMENTS
