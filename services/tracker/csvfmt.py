"""How recipient rows look in a CSV export, and how cells are kept from running as formulas.

A spreadsheet treats a cell starting with ``= + - @`` (or a tab or carriage return that hides
one) as a formula, so such cells are prefixed with ``'``. A cell that is only a signed number is
left alone: it cannot call anything, and an E.164 phone number must stay readable as one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

BOM = "\ufeff"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SIGNED_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")

COLUMNS: tuple[str, ...] = (
    "recipient_id",
    "name",
    "phone",
    "state",
    "skip_reason",
    "attempts",
    "error_code",
    "error_message",
    "twilio_sid",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "replies",
)


def neutralise(cell: str) -> str:
    if cell.startswith(_FORMULA_START) and not _SIGNED_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def display_name(first_name: str | None, last_name: str | None) -> str:
    return " ".join(part for part in (first_name, last_name) if part).strip()


def recipient_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """One recipient as the logs API shows it (from a row of the logs query)."""
    return {
        "id": row["id"],
        "name": display_name(row["first_name"], row["last_name"]),
        "phone": row["phone_e164"],
        "state": row["state"],
        "skip_reason": row["skip_reason"],
        "attempts": row["attempts"],
        "error_code": row["error_code"],
        "error_message": row["error_message"],
        "twilio_sid": row["twilio_sid"],
        "sent_at": row["sent_at"],
        "delivered_at": row["delivered_at"],
        "read_at": row["read_at"],
        "failed_at": row["failed_at"],
        "replies": row["replies"],
    }


def row_cells(row: Mapping[str, Any]) -> list[str]:
    """The CSV cells of one recipient row (as returned by the logs query), neutralised."""
    values = recipient_view(row)
    values["recipient_id"] = values.pop("id")
    return [neutralise(_text(values[column])) for column in COLUMNS]
