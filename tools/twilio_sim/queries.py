"""Parsing of list query parameters into store queries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from .store import MessageQuery, SentRange

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
PAGING_PARAMS = frozenset({"PageSize", "Page", "PageToken"})


def int_param(params: Mapping[str, list[str]], name: str, default: int) -> int:
    values = params.get(name)
    if not values:
        return default
    value = int(values[0])
    if value < 0:
        raise ValueError(name)
    return value


def page_size(params: Mapping[str, list[str]]) -> int:
    size = int_param(params, "PageSize", DEFAULT_PAGE_SIZE)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValueError("PageSize")
    return size


def _day_bounds(value: str) -> tuple[float, float]:
    """[start, end) of a DateSent value: a whole UTC day, or one second of a date-time."""
    if len(value) == 10:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        return day.timestamp(), (day + timedelta(days=1)).timestamp()
    instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.timestamp(), instant.timestamp() + 1


def message_query(params: Mapping[str, list[str]]) -> tuple[MessageQuery, list[tuple[str, str]]]:
    """The store query and the filters to echo in page URIs; ValueError if malformed.

    ``DateSent>`` and ``DateSent<`` are inclusive of the named day, the way
    Twilio documents them (on or after / on or before).
    """
    filters: list[tuple[str, str]] = []
    start: float | None = None
    end: float | None = None
    for name in ("To", "From", "DateSent", "DateSent<", "DateSent>"):
        values = params.get(name)
        if not values:
            continue
        value = values[0]
        filters.append((name, value))
        if name.startswith("DateSent"):
            low, high = _day_bounds(value)
            if name != "DateSent<":
                start = low if start is None else max(start, low)
            if name != "DateSent>":
                end = high if end is None else min(end, high)
    token = params.get("PageToken", [None])[0]
    query = MessageQuery(
        to=params.get("To", [None])[0],
        from_=params.get("From", [None])[0],
        sent=SentRange(start, end),
        page_size=page_size(params),
        page=int_param(params, "Page", 0),
        page_token=token,
    )
    return query, filters
