"""A tenant's sending window (quiet hours): on which days and between which local hours messages go.

Pure arithmetic, no I/O: whether the window is open at an instant, when it next opens and closes,
and when a campaign with so many messages left at a rate finishes, windows considered. Every
answer is an instant (an aware UTC datetime); wall-clock times are read in a ``ZoneInfo``, so a
daylight-saving change never shifts a window: 09:00 is 09:00 local on both sides of it.

Wall-clock times that a change skips or repeats: an opening or closing in the hour the clocks
skip (spring forward) happens at the change itself, the first instant whose local time is past
it; one in the hour they repeat (fall back) happens at its first occurrence. "Open" itself is
read from the local time of the instant, so it needs no such rule.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The search for an opening looks this many local days ahead (a window opens at least weekly).
_DAYS_AHEAD = 8
# How many windows an ETA walks through at most (ten years of daily windows).
_MAX_WINDOWS = 3660


@dataclass(frozen=True)
class SendingWindow:
    """Open on ``days`` (ISO weekdays, 1 = Monday) from ``start`` until ``end`` (local wall-clock
    times; ``end`` None means midnight at the end of the day). With ``recipient_timezone``, a
    recipient whose number's country has a single time zone gets the window in that zone."""

    days: frozenset[int]
    start: time
    end: time | None
    recipient_timezone: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SendingWindow:
        return cls(
            days=frozenset(DAY_NAMES.index(day) + 1 for day in data["days"]),
            start=time.fromisoformat(data["start"]),
            end=None if data["end"] == "24:00" else time.fromisoformat(data["end"]),
            recipient_timezone=bool(data.get("recipient_timezone", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "days": [DAY_NAMES[day - 1] for day in sorted(self.days)],
            "start": self.start.strftime("%H:%M"),
            "end": "24:00" if self.end is None else self.end.strftime("%H:%M"),
            "recipient_timezone": self.recipient_timezone,
        }


def _wall(at: datetime, tz: ZoneInfo) -> datetime:
    return at.astimezone(tz).replace(tzinfo=None)


def local_instant(day: date, at: time | None, tz: ZoneInfo) -> datetime:
    """The first instant whose local time in ``tz`` is ``day`` ``at`` (None: the next midnight) or
    later: the first occurrence of a repeated time, the change itself for a skipped one."""
    wall = datetime.combine(day, at) if at is not None else datetime.combine(day + timedelta(days=1), time())
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(first, tz) == wall:
        return first
    # A skipped time: the change lies between the readings with the offsets before and after it.
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = min(first, other), max(first, other)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _wall(middle, tz) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def is_open(window: SendingWindow | None, at: datetime, tz: ZoneInfo) -> bool:
    if window is None:
        return True
    local = at.astimezone(tz)
    if local.isoweekday() not in window.days:
        return False
    clock = local.time().replace(tzinfo=None)
    return window.start <= clock and (window.end is None or clock < window.end)


def _spans(window: SendingWindow, at: datetime, tz: ZoneInfo) -> Any:
    """The window's (opening, closing) instants of each local day from the one before ``at``'s."""
    day = _wall(at, tz).date() - timedelta(days=1)
    while True:
        if day.isoweekday() in window.days:
            yield local_instant(day, window.start, tz), local_instant(day, window.end, tz)
        day += timedelta(days=1)


def next_opening(window: SendingWindow | None, at: datetime, tz: ZoneInfo) -> datetime:
    """``at`` when the window is open then, else the instant it next opens."""
    if window is None or is_open(window, at, tz):
        return at
    for count, (opening, closing) in enumerate(_spans(window, at, tz)):
        if closing > at and opening < closing:
            return max(opening, at)
        if count > _DAYS_AHEAD:
            break
    raise ValueError("a sending window without days never opens")


def next_closing(window: SendingWindow | None, at: datetime, tz: ZoneInfo) -> datetime | None:
    """When the window that is open at ``at`` closes (None: no window, always open)."""
    if window is None:
        return None
    opening = next_opening(window, at, tz)
    closing = opening
    for start, end in _spans(window, opening, tz):
        if end <= closing:
            continue
        if start > closing:
            break
        # Windows of consecutive days that meet at midnight are one open period.
        closing = end
    return closing


def estimate_finish(
    window: SendingWindow | None, tz: ZoneInfo, *, at: datetime, remaining: int, rate_per_s: float
) -> datetime | None:
    """When ``remaining`` messages sent at ``rate_per_s`` from ``at`` are done, sending only while
    the window is open; None without a rate."""
    if remaining <= 0:
        return at
    if rate_per_s <= 0:
        return None
    left = timedelta(seconds=remaining / rate_per_s)
    if window is None:
        return at + left
    moment = at
    for _ in range(_MAX_WINDOWS):
        opening = next_opening(window, moment, tz)
        closing = next_closing(window, opening, tz)
        assert closing is not None
        if opening + left <= closing:
            return opening + left
        left -= closing - opening
        moment = closing
    return None


class WindowGate:
    """Whether a window is open now, cached until the next instant its answer can change, so a
    check per message costs a comparison (the arithmetic runs at most twice per window)."""

    __slots__ = ("_from", "_open", "_tz", "_until", "_window")

    def __init__(self, window: SendingWindow | None, tz: ZoneInfo) -> None:
        self._window = window
        self._tz = tz
        self._open = True
        self._from = self._until = datetime.min.replace(tzinfo=UTC)

    @property
    def always_open(self) -> bool:
        """No window: callers need not even read the clock."""
        return self._window is None

    def open_at(self, at: datetime) -> bool:
        if self._window is None:
            return True
        if self._from <= at < self._until:
            return self._open
        self._from = at
        self._open = is_open(self._window, at, self._tz)
        if self._open:
            closing = next_closing(self._window, at, self._tz)
            assert closing is not None
            self._until = closing
        else:
            self._until = next_opening(self._window, at, self._tz)
        return self._open

    def opens_at(self, at: datetime) -> datetime:
        return next_opening(self._window, at, self._tz)


class RecipientWindows:
    """The window in each recipient's own zone: their country's, when it has a single one, else
    the tenant's. One cached gate per zone, so a check per message stays a lookup and a compare."""

    def __init__(self, window: SendingWindow, tenant_timezone: str) -> None:
        self._window = window
        self._tenant_timezone = tenant_timezone
        self._gates: dict[str, WindowGate] = {}

    def opens_at(self, phone_e164: str, at: datetime) -> datetime | None:
        """None while the recipient's window is open at ``at``, else when it next opens."""
        zone = recipient_zone(phone_e164) or self._tenant_timezone
        gate = self._gates.get(zone)
        if gate is None:
            gate = self._gates[zone] = WindowGate(self._window, ZoneInfo(zone))
        return None if gate.open_at(at) else gate.opens_at(at)


# Recipients' own time zones ------------------------------------------------------------------


@functools.cache
def _zone_for_calling_code(calling_code: int) -> str | None:
    """The one time zone of the country behind a calling code, or None when the code serves
    several countries with different clocks or a country with several zones. Zones that keep the
    same clock (Europe/London, Europe/Jersey…) count as one."""
    import phonenumbers
    from phonenumbers.tzdata import TIMEZONE_DATA

    if not phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(calling_code):
        return None
    prefix = str(calling_code)
    # Zones by how many of the code's number ranges they serve: the main one comes first.
    zones = Counter(zone for key, names in TIMEZONE_DATA.items() if key.startswith(prefix) for zone in names)
    del zones["Etc/Unknown"]
    distinct = _distinct_clocks([zone for zone, _ in zones.most_common()])
    if len(distinct) != 1:
        return None
    return distinct[0]


def _distinct_clocks(zones: list[str]) -> list[str]:
    """The first zone of each distinct clock (same offsets through a sample of two years)."""
    samples = [datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=7 * week) for week in range(105)]
    seen: dict[tuple[timedelta | None, ...], str] = {}
    for name in zones:
        try:
            tz = ZoneInfo(name)
        except (KeyError, ValueError):
            return []
        key = tuple(sample.astimezone(tz).utcoffset() for sample in samples)
        seen.setdefault(key, name)
    return list(seen.values())


def recipient_zone(phone_e164: str) -> str | None:
    """The single time zone of the country of an E.164 number, or None (use the tenant's)."""
    import phonenumbers

    digits = phone_e164.lstrip("+")
    for length in (1, 2, 3):
        code = digits[:length]
        if code.isdigit() and int(code) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return _zone_for_calling_code(int(code))
    return None
