"""The sending window's arithmetic: open or not, next opening and closing, the finish estimate,
across both daylight-saving changes (America/New_York: 2026-03-08 02:00 skips to 03:00,
2026-11-01 02:00 falls back to 01:00), and the time zone of a recipient's country."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.sending_window import (
    RecipientWindows,
    SendingWindow,
    WindowGate,
    estimate_finish,
    is_open,
    local_instant,
    next_closing,
    next_opening,
    recipient_zone,
)

NEW_YORK = ZoneInfo("America/New_York")
MON_SAT_9_TO_20 = SendingWindow(days=frozenset(range(1, 7)), start=time(9), end=time(20))
EVERY_DAY_9_TO_20 = SendingWindow(days=frozenset(range(1, 8)), start=time(9), end=time(20))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_window_is_open_from_its_start_until_just_before_its_end_on_its_days() -> None:
    # Given Monday 2026-06-01 in New York (UTC-4)
    # Then it is closed before 09:00 and from 20:00, open in between, closed on Sunday
    assert not is_open(MON_SAT_9_TO_20, utc(2026, 6, 1, 12, 59, 59), NEW_YORK)
    assert is_open(MON_SAT_9_TO_20, utc(2026, 6, 1, 13), NEW_YORK)
    assert is_open(MON_SAT_9_TO_20, utc(2026, 6, 1, 23, 59, 59), NEW_YORK)
    assert not is_open(MON_SAT_9_TO_20, utc(2026, 6, 2, 0), NEW_YORK)
    assert not is_open(MON_SAT_9_TO_20, utc(2026, 6, 7, 15), NEW_YORK)
    assert is_open(None, utc(2026, 6, 7, 3), NEW_YORK)


def test_after_saturday_evening_the_window_next_opens_on_monday_morning() -> None:
    # Given Saturday 2026-06-06 20:00 local, the window's end
    saturday_end = utc(2026, 6, 7, 0)
    # When asking for the next opening
    opening = next_opening(MON_SAT_9_TO_20, saturday_end, NEW_YORK)
    # Then it is Monday 09:00 local, and the window open then closes at 20:00 local
    assert opening == utc(2026, 6, 8, 13)
    assert next_closing(MON_SAT_9_TO_20, opening, NEW_YORK) == utc(2026, 6, 9, 0)
    # And an open window's next opening is now
    assert next_opening(MON_SAT_9_TO_20, utc(2026, 6, 8, 15), NEW_YORK) == utc(2026, 6, 8, 15)


def test_spring_forward_the_window_opens_at_nine_local_which_is_an_hour_earlier_in_utc() -> None:
    # Given Saturday 2026-03-07 20:00 EST (UTC-5), the night the clocks skip 02:00-03:00
    end_of_saturday = utc(2026, 3, 8, 1)
    # When the window next opens
    opening = next_opening(EVERY_DAY_9_TO_20, end_of_saturday, NEW_YORK)
    # Then it is Sunday 09:00 EDT (UTC-4): 13:00 UTC, after 12 hours closed rather than 13
    assert opening == utc(2026, 3, 8, 13)
    assert opening - end_of_saturday == timedelta(hours=12)
    assert not is_open(EVERY_DAY_9_TO_20, opening - timedelta(seconds=1), NEW_YORK)


def test_fall_back_the_window_opens_at_nine_local_which_is_an_hour_later_in_utc() -> None:
    # Given Saturday 2026-10-31 20:00 EDT (UTC-4), the night the clocks repeat 01:00-02:00
    end_of_saturday = utc(2026, 11, 1, 0)
    # When the window next opens
    opening = next_opening(EVERY_DAY_9_TO_20, end_of_saturday, NEW_YORK)
    # Then it is Sunday 09:00 EST (UTC-5): 14:00 UTC, after 14 hours closed
    assert opening == utc(2026, 11, 1, 14)
    assert opening - end_of_saturday == timedelta(hours=14)


def test_a_skipped_opening_happens_at_the_change_and_a_repeated_one_at_its_first_occurrence() -> None:
    # Given windows opening at 02:30, which 2026-03-08 skips and 2026-11-01 has twice
    window = SendingWindow(days=frozenset(range(1, 8)), start=time(2, 30), end=time(5))
    # Then on the spring day it opens when the clocks jump (03:00 EDT = 07:00 UTC)
    assert next_opening(window, utc(2026, 3, 8, 5), NEW_YORK) == utc(2026, 3, 8, 7)
    assert local_instant(datetime(2026, 3, 8).date(), time(2, 30), NEW_YORK) == utc(2026, 3, 8, 7)
    # And a window opening at 01:30 on the autumn day opens at the first 01:30 (EDT = 05:30 UTC)
    autumn = SendingWindow(days=frozenset(range(1, 8)), start=time(1, 30), end=time(5))
    assert next_opening(autumn, utc(2026, 11, 1, 4), NEW_YORK) == utc(2026, 11, 1, 5, 30)


def test_windows_of_consecutive_days_that_meet_at_midnight_close_once() -> None:
    # Given a window open all day Monday and Tuesday
    window = SendingWindow(days=frozenset({1, 2}), start=time(0), end=None)
    # Then on Monday morning it closes at Tuesday's end, 48 hours after Monday began
    assert next_closing(window, utc(2026, 6, 1, 8), NEW_YORK) == utc(2026, 6, 3, 4)


def test_the_estimate_adds_the_closed_hours_to_the_sending_time() -> None:
    # Given 11 hours of sending at 1 message a second, started Monday 2026-06-01 at 15:00 local
    start = utc(2026, 6, 1, 19)
    messages = 11 * 3600
    # When there is no window: 11 hours later
    assert estimate_finish(None, NEW_YORK, at=start, remaining=messages, rate_per_s=1.0) == start + timedelta(
        hours=11
    )
    # When the window is Mon-Sat 09:00-20:00: 5 hours on Monday, 6 on Tuesday from 09:00 → 15:00
    finish = estimate_finish(MON_SAT_9_TO_20, NEW_YORK, at=start, remaining=messages, rate_per_s=1.0)
    assert finish == utc(2026, 6, 2, 19)
    # And started on Saturday afternoon, Sunday is skipped
    saturday = utc(2026, 6, 6, 19)
    assert estimate_finish(MON_SAT_9_TO_20, NEW_YORK, at=saturday, remaining=messages, rate_per_s=1.0) == utc(
        2026, 6, 8, 19
    )
    # And nothing left is done now; no rate gives no estimate
    assert estimate_finish(MON_SAT_9_TO_20, NEW_YORK, at=start, remaining=0, rate_per_s=0) == start
    assert estimate_finish(MON_SAT_9_TO_20, NEW_YORK, at=start, remaining=5, rate_per_s=0) is None


def test_the_estimate_across_spring_forward_counts_the_shorter_night() -> None:
    # Given every day 09:00-20:00 and two hours of sending from Saturday 2026-03-07 19:00 EST
    start = utc(2026, 3, 8, 0)
    # Then one hour goes on Saturday and the other from Sunday 09:00 EDT: done 10:00 EDT = 14:00 UTC
    finish = estimate_finish(EVERY_DAY_9_TO_20, NEW_YORK, at=start, remaining=7200, rate_per_s=1.0)
    assert finish == utc(2026, 3, 8, 14)


def test_the_cached_gate_answers_like_the_arithmetic_and_changes_at_the_boundaries() -> None:
    # Given a gate over Mon-Sat 09:00-20:00
    gate = WindowGate(MON_SAT_9_TO_20, NEW_YORK)
    moments = [utc(2026, 6, 6, 23, 59, 59), utc(2026, 6, 7, 0), utc(2026, 6, 8, 12, 59), utc(2026, 6, 8, 13)]
    # Then every answer, asked in time order, is the arithmetic's
    assert [gate.open_at(m) for m in moments] == [is_open(MON_SAT_9_TO_20, m, NEW_YORK) for m in moments]
    assert [gate.open_at(m) for m in moments] == [True, False, False, True]
    # And a gate without a window is always open
    assert WindowGate(None, NEW_YORK).open_at(moments[1])


def test_the_window_round_trips_through_its_stored_form() -> None:
    stored = {"days": ["mon", "sat"], "start": "09:00", "end": "24:00", "recipient_timezone": True}
    window = SendingWindow.from_json(stored)
    assert window.days == frozenset({1, 6}) and window.end is None and window.recipient_timezone
    assert window.to_json() == stored


@pytest.mark.parametrize(
    ("phone", "zone"),
    [
        ("+33612345678", "Europe/Paris"),
        ("+447700900123", "Europe/London"),
        ("+4915112345678", "Europe/Berlin"),
        ("+14155550100", None),  # the United States and Canada have several zones
        ("+34612345678", None),  # Spain: the Canaries keep another clock
        ("+79161234567", None),
        ("not a phone", None),
    ],
)
def test_a_recipient_gets_their_countrys_zone_only_when_it_has_a_single_one(
    phone: str, zone: str | None
) -> None:
    assert recipient_zone(phone) == zone


def test_recipients_get_the_window_in_their_countrys_zone_or_else_the_tenants() -> None:
    # Given Mon-Sat 09:00-20:00 kept in recipients' zones, for a New York tenant
    windows = RecipientWindows(MON_SAT_9_TO_20, "America/New_York")
    # When it is Wednesday 15:00 in New York, 21:00 in Paris
    at = utc(2026, 12, 9, 20)
    # Then a US number (several zones: the tenant's) is open and a French one waits for Paris's 09:00
    assert windows.opens_at("+14155550100", at) is None
    assert windows.opens_at("+33612345678", at) == datetime(2026, 12, 10, 9, tzinfo=ZoneInfo("Europe/Paris"))
