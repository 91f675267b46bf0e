"""When a scheduled campaign starts: a local time in a zone (the given one or the tenant's), or an
instant with its offset, turned into one instant; refused, naming the field, when it is in the
past, in a zone that does not exist, or a local time the zone's clocks skip."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.http import InputError
from shared.validation import bounded_datetime


@dataclass(frozen=True)
class Schedule:
    at: datetime
    timezone: str


def resolve_schedule(
    *, at: datetime, timezone: str | None, tenant_timezone: str, now: datetime, field: str = "schedule"
) -> Schedule:
    """The instant ``at`` names; ``field`` prefixes the names of refused fields."""
    zone_name = timezone or tenant_timezone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError.single(
            _name(field, "timezone"), f"unknown time zone {zone_name!r} (an IANA name, e.g. Europe/Paris)"
        ) from None
    if at.tzinfo is None:
        instant = at.replace(tzinfo=zone, fold=0)
        if instant.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != at:
            raise InputError.single(
                _name(field, "at"), f"{at.isoformat()} does not exist in {zone_name}: the clocks skip it"
            )
    else:
        instant = at
    try:
        bounded_datetime(instant)
    except ValueError as exc:
        raise InputError.single(_name(field, "at"), str(exc)) from None
    instant = instant.astimezone(UTC)
    if instant <= now:
        raise InputError.single(
            _name(field, "at"),
            f"{instant.isoformat()} is in the past (now {now.isoformat(timespec='seconds')})",
        )
    return Schedule(instant, zone_name)


def _name(prefix: str, field: str) -> str:
    return f"{prefix}.{field}" if prefix else field
