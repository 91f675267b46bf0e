"""What a hold shows: only a running campaign's hold that has not ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.holds import MESSAGING_LIMIT, current_hold

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def test_a_running_campaigns_hold_shows_its_reason_a_description_and_when_it_ends() -> None:
    hold = current_hold(state="running", reason=MESSAGING_LIMIT, until=NOW + timedelta(minutes=5), now=NOW)
    assert hold is not None
    assert (hold["reason"], hold["until"], hold["in_s"]) == (
        MESSAGING_LIMIT,
        NOW + timedelta(minutes=5),
        300.0,
    )
    assert "messaging limit" in hold["description"]


def test_a_hold_that_ended_or_of_a_campaign_not_running_shows_nothing() -> None:
    later = NOW + timedelta(minutes=5)
    assert current_hold(state="running", reason=MESSAGING_LIMIT, until=NOW, now=NOW) is None
    assert current_hold(state="paused", reason=MESSAGING_LIMIT, until=later, now=NOW) is None
    assert current_hold(state="running", reason=None, until=None, now=NOW) is None
