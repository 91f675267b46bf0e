"""DESIGN §5 as plain Python over in-memory rows: the executable definition the SQL is held to.

It is deliberately the naive reading — every customer, every appointment, no indexes, no
precomputed columns — so that a property test comparing it with the SQL on random data checks
the optimised query against the words of the product definition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from services.segmenter.audience.model import BUILTIN_CANCELLED, Audience
from services.segmenter.audience.windows import segment_window


@dataclass(frozen=True)
class Customer:
    id: int
    phone_e164: str | None


@dataclass(frozen=True)
class Appointment:
    id: int
    customer_id: int
    service: str | None
    location: str | None
    status: str
    starts_at: datetime
    created_at: datetime
    status_changed_at: datetime


@dataclass(frozen=True)
class Booking:
    customers: tuple[Customer, ...]
    appointments: tuple[Appointment, ...]
    custom_cancelled: frozenset[str] = frozenset()
    suppressed: frozenset[str] = frozenset()

    def is_cancelled(self, status: str) -> bool:
        return status in BUILTIN_CANCELLED or status in self.custom_cancelled


@dataclass(frozen=True)
class Member:
    customer_id: int
    phone_e164: str | None
    appointment_id: int | None
    last_starts_at: datetime | None


@dataclass(frozen=True)
class PreviewCounts:
    recipients: int
    matched: int
    no_valid_phone: int
    suppressed: int
    duplicate_phone: int


def _matching(audience: Audience, appointments: Iterable[Appointment]) -> list[Appointment]:
    return [
        a
        for a in appointments
        if (not audience.service_ids or a.service in audience.service_ids)
        and (not audience.location_ids or a.location in audience.location_ids)
        and (not audience.statuses or a.status in audience.statuses)
    ]


def members(audience: Audience, booking: Booking, *, now: datetime, tz: str) -> list[Member]:
    window = segment_window(audience, now=now, tz=tz)
    by_customer: dict[int, list[Appointment]] = {c.id: [] for c in booking.customers}
    for appointment in _matching(audience, booking.appointments):
        by_customer[appointment.customer_id].append(appointment)
    result = []
    for customer in booking.customers:
        mine = by_customer[customer.id]
        if audience.has_appointment_filters and not mine:
            continue
        if audience.min_appointments is not None and len(mine) < audience.min_appointments:
            continue
        last = max((a.starts_at for a in mine), default=None)
        witness: Appointment | None = None
        segment = audience.segment
        if segment == "recent_bookers":
            assert window is not None
            hits = [a for a in mine if window.start <= a.created_at <= window.end]
            if not hits:
                continue
            witness = max(hits, key=lambda a: (a.created_at, a.id))
        elif segment == "upcoming":
            assert window is not None
            hits = [
                a
                for a in mine
                if window.start <= a.starts_at < window.end
                and (audience.statuses or not booking.is_cancelled(a.status))
            ]
            if not hits:
                continue
            witness = min(hits, key=lambda a: (a.starts_at, a.id))
        elif segment == "first_time":
            if len(mine) != 1:
                continue
        elif segment == "repeat":
            if len(mine) < audience.repeat_min:
                continue
        elif segment == "lapsed":
            assert window is not None
            if last is None or last >= window.start:
                continue
        elif segment == "cancelled_recent":
            assert window is not None
            if not any(
                booking.is_cancelled(a.status) and window.start <= a.status_changed_at <= window.end
                for a in mine
            ):
                continue
        elif segment == "all_appointments":
            if not mine:
                continue
        result.append(
            Member(
                customer_id=customer.id,
                phone_e164=customer.phone_e164,
                appointment_id=witness.id if witness is not None and audience.provides_appointment else None,
                last_starts_at=last,
            )
        )
    return result


_NEVER = datetime.min.replace(tzinfo=UTC)


def _winner_key(member: Member) -> tuple[datetime, int]:
    return (member.last_starts_at or _NEVER, member.customer_id)


def recipients(audience: Audience, booking: Booking, *, now: datetime, tz: str) -> dict[str, Member]:
    """One member per valid, not suppressed number: the one whose latest appointment starts last."""
    chosen: dict[str, Member] = {}
    for member in members(audience, booking, now=now, tz=tz):
        phone = member.phone_e164
        if phone is None or (audience.exclude_suppressed and phone in booking.suppressed):
            continue
        current = chosen.get(phone)
        if current is None or _winner_key(member) > _winner_key(current):
            chosen[phone] = member
    return chosen


def preview_counts(audience: Audience, booking: Booking, *, now: datetime, tz: str) -> PreviewCounts:
    found = members(audience, booking, now=now, tz=tz)
    no_phone = sum(1 for m in found if m.phone_e164 is None)
    suppressed = sum(
        1
        for m in found
        if m.phone_e164 is not None and audience.exclude_suppressed and m.phone_e164 in booking.suppressed
    )
    chosen = recipients(audience, booking, now=now, tz=tz)
    return PreviewCounts(
        recipients=len(chosen),
        matched=len(found),
        no_valid_phone=no_phone,
        suppressed=suppressed,
        duplicate_phone=len(found) - no_phone - suppressed - len(chosen),
    )
