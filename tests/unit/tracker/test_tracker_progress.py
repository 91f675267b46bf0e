"""Progress figures from per-state counts."""

from __future__ import annotations

from services.tracker.progress import build_progress
from shared.recipient_states import RECIPIENT_STATES


def test_progress_counts_open_recipients_as_remaining_and_derives_rate_and_eta() -> None:
    progress = build_progress(
        campaign_id="c1",
        state="running",
        pause_reason=None,
        counts={"pending": 600, "sending": 40, "sent": 300, "delivered": 50, "failed": 10},
        sent_in_window=200,
    )
    assert progress.total == 1000
    assert progress.remaining == 640
    assert progress.done == 360
    assert progress.rate_per_s == 20.0
    assert progress.eta_s == 32.0
    body = progress.as_dict()
    assert body["percent"] == 36.0
    assert set(body["counts"]) == set(RECIPIENT_STATES)


def test_no_eta_without_movement_or_outside_running() -> None:
    idle = build_progress(
        campaign_id="c1", state="running", pause_reason=None, counts={"pending": 5}, sent_in_window=0
    )
    paused = build_progress(
        campaign_id="c1", state="paused", pause_reason="error rate", counts={"pending": 5}, sent_in_window=50
    )
    assert idle.eta_s is None
    assert paused.eta_s is None
    assert paused.as_dict()["pause_reason"] == "error rate"


def test_an_empty_campaign_is_zero_percent_and_a_completed_one_is_final() -> None:
    empty = build_progress(
        campaign_id="c1", state="completed", pause_reason=None, counts={}, sent_in_window=0
    )
    assert empty.as_dict()["percent"] == 0.0
    assert empty.final
