"""Input types that cannot reach PostgreSQL as an error: text it can store, integers that fit
their columns, datetimes inside its range, JSON values it accepts.

Every free-text field of a request or a broker event is a ``str`` annotated with ``Text`` and its
maximum length::

    name: Annotated[str, Text(200, min_length=1)]
    note: Annotated[str, Text(500)] | None = None

so a NUL byte, a lone surrogate (JSON's ``"\\ud800"``, which cannot be encoded as UTF-8), an
overlong value, an integer past ``integer``/``bigint`` or a year PostgreSQL or Python cannot hold
is refused by the schema with a 422 naming the field, before anything is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field, GetCoreSchemaHandler
from pydantic_core import core_schema

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
INT8_MIN, INT8_MAX = -(2**63), 2**63 - 1

# PostgreSQL's timestamptz reaches 294276 AD, Python's datetime 9999 AD; a day of margin on each
# side keeps any time-zone shift or one-day arithmetic of an accepted value inside both.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)

# NUL cannot be stored in text or jsonb; surrogates cannot be encoded as UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

JSON_MAX_DEPTH = 8


def storable_text(value: str) -> str:
    """The value unchanged, or ValueError when PostgreSQL could not store it as text."""
    if not value.isascii() or "\x00" in value:
        found = _UNSTORABLE.search(value)
        if found is not None:
            code = ord(found.group())
            what = "a NUL character" if code == 0 else f"an unpaired surrogate U+{code:04X}"
            raise ValueError(f"contains {what}, which cannot be stored")
    return value


def bounded_datetime(value: datetime) -> datetime:
    """An aware datetime between 0001-01-02 and 9999-12-30 (UTC), else ValueError."""
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = EARLIEST - timedelta(days=1) if value.year < 5000 else LATEST + timedelta(days=1)
    if not EARLIEST <= in_utc <= LATEST:
        raise ValueError(f"must be between {EARLIEST.date()} and {LATEST.date()}")
    return value


def storable_json(value: Any, depth: int = 0) -> Any:
    """A JSON value jsonb accepts: storable strings and keys, finite numbers that fit, bounded depth."""
    if depth > JSON_MAX_DEPTH:
        raise ValueError(f"nested deeper than {JSON_MAX_DEPTH} levels")
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not INT8_MIN <= value <= INT8_MAX:
            raise ValueError("a number is out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a number is not finite")
        return value
    if isinstance(value, Mapping):
        for key, item in value.items():
            storable_text(str(key))
            storable_json(item, depth + 1)
        return value
    if isinstance(value, list | tuple):
        for item in value:
            storable_json(item, depth + 1)
        return value
    raise ValueError(f"unsupported value of type {type(value).__name__}")


@dataclass(frozen=True)
class Text:
    """Marks a ``str`` as text PostgreSQL can store, at most ``max_length`` characters.

    The length is checked by the string validator itself (its usual "at most N characters"
    message), then the characters; it also holds inside ``| None`` and lists, where a length
    given with ``Field`` beside a validator would be checked as a generic "items" count.
    """

    max_length: int
    min_length: int = 0
    pattern: str | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        string = core_schema.str_schema(
            max_length=self.max_length, min_length=self.min_length or None, pattern=self.pattern
        )
        return core_schema.no_info_after_validator_function(storable_text, string)


Int4 = Annotated[int, Field(ge=INT4_MIN, le=INT4_MAX)]
"""Fits an ``integer`` column."""

Int8 = Annotated[int, Field(ge=INT8_MIN, le=INT8_MAX)]
"""Fits a ``bigint`` column (ids, counters)."""

Timestamp = Annotated[AwareDatetime, AfterValidator(bounded_datetime)]
"""An aware datetime both PostgreSQL and Python can store and shift by a day."""

JsonObject = Annotated[dict[str, Any], AfterValidator(storable_json)]
"""A JSON object jsonb accepts (no NUL, no lone surrogate, no NaN, bounded nesting)."""
