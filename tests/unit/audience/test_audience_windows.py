"""Window arithmetic in the tenant's time zone: calendar days at the same local wall-clock time."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from services.segmenter.audience.model import Audience
from services.segmenter.audience.windows import Window, segment_window, shift_calendar_days

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("now", "days", "tz", "expected"),
    [
        # Clocks went forward on 2026-03-08: 30 days back is 12:00 EST, 25 hours per day not assumed.
        (
            datetime(2026, 3, 20, 12, tzinfo=NY),
            -30,
            "America/New_York",
            datetime(2026, 2, 18, 17, tzinfo=UTC),
        ),
        # Clocks go back on 2026-11-01.
        (datetime(2026, 11, 5, 9, tzinfo=NY), -7, "America/New_York", datetime(2026, 10, 29, 13, tzinfo=UTC)),
        (datetime(2026, 3, 5, 12, tzinfo=NY), 7, "America/New_York", datetime(2026, 3, 12, 16, tzinfo=UTC)),
        (datetime(2026, 1, 1, tzinfo=UTC), -90, "UTC", datetime(2025, 10, 3, tzinfo=UTC)),
    ],
)
def test_shifting_by_calendar_days_keeps_the_local_wall_clock_time(
    now: datetime, days: int, tz: str, expected: datetime
) -> None:
    assert shift_calendar_days(now, days, tz) == expected


def test_a_wall_clock_time_skipped_by_the_clock_change_lands_just_after_the_gap() -> None:
    # Given 02:30 on the day after clocks jumped from 02:00 to 03:00
    now = datetime(2026, 3, 9, 2, 30, tzinfo=NY)

    # When moving one day back
    shifted = shift_calendar_days(now, -1, "America/New_York")

    # Then it is read with the offset before the change, i.e. 03:30 EDT
    assert shifted.astimezone(NY).replace(tzinfo=None) == datetime(2026, 3, 8, 3, 30)


def test_a_wall_clock_time_that_occurs_twice_means_the_first_occurrence() -> None:
    now = datetime(2026, 11, 2, 1, 30, tzinfo=NY)
    assert shift_calendar_days(now, -1, "America/New_York") == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError):
        shift_calendar_days(datetime(2026, 1, 1), 1, "UTC")


def test_upcoming_runs_forward_from_now_and_the_others_back_to_now() -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert segment_window(Audience(segment="upcoming", days=2), now=now, tz="UTC") == Window(
        datetime(2026, 6, 1, 12, tzinfo=UTC), datetime(2026, 6, 3, 12, tzinfo=UTC)
    )
    assert segment_window(Audience(segment="recent_bookers"), now=now, tz="UTC") == Window(
        datetime(2026, 5, 2, 12, tzinfo=UTC), now
    )
    assert segment_window(Audience(segment="first_time"), now=now, tz="UTC") is None
