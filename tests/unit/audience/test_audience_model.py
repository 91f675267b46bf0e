"""The audience definition refuses what it cannot mean, naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.segmenter.audience.model import Audience


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"segment": "vip"}, "segment"),
        ({"segment": "recent_bookers", "days": -1}, "days"),
        ({"segment": "recent_bookers", "days": 0}, "days"),
        ({"segment": "lapsed", "days": 100_000}, "days"),
        ({"segment": "first_time", "days": 30}, "days"),
        ({"segment": "upcoming", "min_count": 3}, "min_count"),
        ({"segment": "repeat", "min_count": 1}, "min_count"),
        ({"segment": "all_customers", "min_appointments": 0}, "min_appointments"),
        ({"segment": "all_customers", "colour": "red"}, "colour"),
        ({"segment": "all_customers", "service_ids": "cut"}, "service_ids"),
    ],
)
def test_invalid_audiences_are_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Audience.model_validate(body)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]


@pytest.mark.parametrize(
    ("segment", "days"),
    [("recent_bookers", 30), ("upcoming", 7), ("lapsed", 90), ("cancelled_recent", 30), ("first_time", None)],
)
def test_windowed_segments_have_their_default_window(segment: str, days: int | None) -> None:
    assert Audience.model_validate({"segment": segment}).window_days == days


def test_repeat_needs_three_appointments_unless_told_otherwise() -> None:
    assert Audience(segment="repeat").repeat_min == 3
    assert Audience(segment="repeat", min_count=5).repeat_min == 5


def test_only_upcoming_and_recent_bookers_provide_an_appointment() -> None:
    providing = {
        s
        for s in ("upcoming", "recent_bookers", "first_time", "lapsed", "all_customers")
        if Audience.model_validate({"segment": s}).provides_appointment
    }
    assert providing == {"upcoming", "recent_bookers"}


def test_a_stored_audience_reads_back_unchanged() -> None:
    audience = Audience(
        segment="upcoming", days=14, service_ids=["cut", "cut", "color"], exclude_suppressed=False
    )
    assert Audience.model_validate(audience.model_dump(mode="json")) == audience
    assert audience.service_ids == ["cut", "color"]
