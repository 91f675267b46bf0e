"""The CLI's event-stream parser and progress rendering."""

from __future__ import annotations

from wce_cli.render import describe, summary
from wce_cli.sse import EventParser, ServerEvent


def test_the_parser_returns_an_event_at_each_blank_line() -> None:
    parser = EventParser()
    lines = [
        "retry: 1000",
        "",
        ": comment",
        "event: progress",
        "id: 1",
        'data: {"a":',
        "data: 1}",
        "",
        "data: x",
        "",
    ]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert events == [ServerEvent("progress", '{"a":\n1}', "1"), ServerEvent("message", "x", "1")]


def test_progress_updates_become_bar_fields_and_a_summary_of_non_empty_states() -> None:
    update = {
        "campaign_id": "c1",
        "state": "paused",
        "pause_reason": "error rate above 20%",
        "counts": {"pending": 10, "sent": 90, "read": 0},
        "total": 100,
        "done": 90,
        "remaining": 10,
        "percent": 90.0,
        "rate_per_s": 12.5,
        "eta_s": 3725.0,
    }
    fields = describe(update)
    assert fields["completed"] == 90 and fields["total"] == 100
    assert "paused" in fields["description"] and "error rate" in fields["description"]
    assert fields["rate"] == "12.5/s"
    assert fields["eta"] == "ETA 1:02:05"
    table = summary(update)
    assert table.row_count == 3


def test_a_paced_tenant_shows_its_effective_rate_beside_the_measured_one() -> None:
    update = {
        "campaign_id": "c1",
        "state": "running",
        "pause_reason": None,
        "counts": {"pending": 10, "sent": 90},
        "total": 100,
        "done": 90,
        "remaining": 10,
        "percent": 90.0,
        "rate_per_s": 37.5,
        "eta_s": 1.0,
        "configured_rate_per_s": 80,
        "effective_rate_per_s": 38.4,
    }
    assert describe(update)["rate"] == "37.5/s (paced to 38 of 80/s)"
    assert describe({**update, "effective_rate_per_s": 80.0})["rate"] == "37.5/s"
