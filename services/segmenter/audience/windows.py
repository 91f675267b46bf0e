"""Window arithmetic in the tenant's time zone (DESIGN §5).

"``days`` ago" is the same local wall-clock time ``days`` calendar days earlier, so a
daylight-saving change inside the window never shifts its edge by an hour. A wall-clock time that
occurs twice (clocks going back) means its first occurrence; one that does not exist (clocks going
forward) is read with the offset in force before the change, which lands it just after the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.segmenter.audience.model import Audience


def shift_calendar_days(now: datetime, days: int, tz: str) -> datetime:
    """``now`` moved by ``days`` calendar days (negative: earlier) at the same local wall-clock time."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(tz)
    wall = now.astimezone(zone).replace(tzinfo=None, fold=0) + timedelta(days=days)
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """The instants a windowed segment compares with: ``start`` and ``end`` in UTC.

    recent_bookers and cancelled_recent take ``start <= t <= end``; upcoming ``start <= t < end``;
    lapsed needs the latest start ``< start``.
    """

    start: datetime
    end: datetime


def segment_window(audience: Audience, *, now: datetime, tz: str) -> Window | None:
    days = audience.window_days
    if days is None:
        return None
    now_utc = now.astimezone(UTC)
    if audience.segment == "upcoming":
        return Window(start=now_utc, end=shift_calendar_days(now, days, tz))
    return Window(start=shift_calendar_days(now, -days, tz), end=now_utc)
