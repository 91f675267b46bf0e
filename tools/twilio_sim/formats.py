"""Twilio's wire formats: SIDs, date strings and JSON bodies."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson

from .errors import TwilioError, more_info

API_VERSION = "2010-04-01"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def new_sid(prefix: str) -> str:
    """A SID such as ``SM`` followed by 32 lowercase hex digits."""
    return prefix + os.urandom(16).hex()


class _SecondCache:
    """Formats a whole-second timestamp once; thousands of messages share each second."""

    __slots__ = ("_fmt", "_second", "_text")

    def __init__(self, fmt: Callable[[time.struct_time], str]) -> None:
        self._fmt = fmt
        self._second = -1
        self._text = ""

    def __call__(self, ts: float) -> str:
        second = int(ts)
        if second != self._second:
            self._text = self._fmt(time.gmtime(second))
            self._second = second
        return self._text


def _rfc2822(t: time.struct_time) -> str:
    # Built by hand: strftime's %a/%b follow the process locale, Twilio's do not.
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _iso8601(t: time.struct_time) -> str:
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"


rfc2822 = _SecondCache(_rfc2822)
iso8601 = _SecondCache(_iso8601)


def error_body(error: TwilioError) -> bytes:
    return orjson.dumps(
        {
            "code": error.code,
            "message": error.message,
            "more_info": more_info(error.code),
            "status": error.http_status,
        }
    )


def json_bytes(payload: Any) -> bytes:
    return orjson.dumps(payload)


def message_list(
    path: str,
    filters: list[tuple[str, str]],
    page: int,
    page_size: int,
    page_token: str | None,
    messages: list[dict[str, Any]],
    next_token: str | None,
) -> dict[str, Any]:
    """Twilio's 2010-04-01 list envelope; URIs are relative like Twilio's."""

    def uri(number: int, token: str | None) -> str:
        query = [*filters, ("PageSize", str(page_size)), ("Page", str(number))]
        if token is not None:
            query.append(("PageToken", token))
        return f"{path}?{urlencode(query)}"

    start = page * page_size
    return {
        "end": start + len(messages) - 1 if messages else start,
        "first_page_uri": uri(0, None),
        "messages": messages,
        "next_page_uri": uri(page + 1, next_token) if next_token is not None else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": uri(page - 1, None) if page > 0 else None,
        "start": start,
        "uri": uri(page, page_token),
    }


def content_meta(
    base_url: str,
    path: str,
    filters: list[tuple[str, str]],
    page: int,
    page_size: int,
    has_next: bool,
) -> dict[str, Any]:
    """The ``meta`` block of Content API lists; URLs are absolute like Twilio's."""

    def url(number: int) -> str:
        query = [*filters, ("PageSize", str(page_size)), ("Page", str(number))]
        if number > 0:
            query.append(("PageToken", f"PT{number * page_size}"))
        return f"{base_url}{path}?{urlencode(query)}"

    return {
        "page": page,
        "page_size": page_size,
        "first_page_url": url(0),
        "previous_page_url": url(page - 1) if page > 0 else None,
        "url": url(page),
        "next_page_url": url(page + 1) if has_next else None,
        "key": "contents",
    }
