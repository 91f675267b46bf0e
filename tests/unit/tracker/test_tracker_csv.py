"""CSV cells: formula neutralisation and the row layout."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from services.tracker.csvfmt import COLUMNS, neutralise, row_cells


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("plain", "plain"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_cells_that_a_spreadsheet_would_run_are_prefixed(cell: str, expected: str) -> None:
    assert neutralise(cell) == expected


@pytest.mark.parametrize("cell", ["+14155550123", "-5", "+1.5", "63014"])
def test_plain_signed_numbers_and_phone_numbers_stay_as_they_are(cell: str) -> None:
    assert neutralise(cell) == cell


def test_a_row_has_every_column_in_order_with_names_joined_and_times_in_iso() -> None:
    sent = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = {
        "id": 7,
        "first_name": "=Ada",
        "last_name": "Lovelace",
        "phone_e164": "+14155550123",
        "state": "failed_delivery",
        "skip_reason": None,
        "attempts": 2,
        "error_code": 63014,
        "error_message": "-blocked",
        "twilio_sid": "SM1",
        "sent_at": sent,
        "delivered_at": None,
        "read_at": None,
        "failed_at": None,
        "replies": 3,
    }
    cells = row_cells(record)
    assert len(cells) == len(COLUMNS)
    by_name = dict(zip(COLUMNS, cells, strict=True))
    assert by_name["name"] == "'=Ada Lovelace"
    assert by_name["phone"] == "+14155550123"
    assert by_name["error_message"] == "'-blocked"
    assert by_name["sent_at"] == "2026-01-02T03:04:05+00:00"
    assert by_name["replies"] == "3"
    assert by_name["delivered_at"] == ""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    assert next(csv.reader(io.StringIO(buffer.getvalue()))) == cells
