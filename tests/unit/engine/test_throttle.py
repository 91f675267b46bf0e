"""Slot arithmetic: spacing, chunk spans, the one-second bound and hand-over between dispatchers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.throttle import SlotClock, chunk_length, is_late, max_starts_per_window, slot_interval


def test_slots_are_spaced_slightly_wider_than_the_rate() -> None:
    # Given 80 msgs/s and a 1.5% margin / When the interval is computed
    interval = slot_interval(80, 0.015)
    # Then the mean rate is within 2% of the target and below it
    assert 78.4 <= 1 / interval < 80


@pytest.mark.parametrize("rate", [1, 10, 80, 400, 1000])
def test_no_one_second_window_exceeds_the_rate_even_with_the_late_tolerance(rate: int) -> None:
    # Given the default margin and the sender's late tolerance of 8 ms
    interval = slot_interval(rate, 0.015)
    # When starts may slip by up to that tolerance / Then a window never holds more than the rate
    assert max_starts_per_window(interval, jitter_s=0.008) <= rate


def test_a_chunk_spans_at_most_a_quarter_second() -> None:
    # Given 80/s / When the chunk length is chosen
    interval = slot_interval(80, 0.015)
    length = chunk_length(interval, 50)
    # Then its slots span no more than 250 ms, and the configured size caps faster rates
    assert (length - 1) * interval <= 0.25
    assert chunk_length(slot_interval(400, 0.015), 20) == 20
    assert chunk_length(slot_interval(1, 0.015), 20) == 1


def test_unlimited_tenants_get_the_configured_chunk_size() -> None:
    assert chunk_length(None, 37) == 37


def test_allocation_never_hands_out_slots_in_the_past_or_overlapping() -> None:
    # Given a clock whose next slot lies in the past
    clock = SlotClock(next_slot_at=100.0, started=True)
    # When two chunks are allocated at t=105
    first = clock.allocate(10, 0.1, now=105.0)
    second = clock.allocate(5, 0.1, now=105.0)
    # Then the first starts now and the second right after the first's last slot
    assert first == 105.0
    assert second == pytest.approx(106.0)
    assert clock.next_slot_at == pytest.approx(106.5)


def test_the_next_chunk_waits_until_it_is_within_the_lead() -> None:
    clock = SlotClock(next_slot_at=10.0, started=True)
    assert clock.wait_s(now=9.0, lead_s=0.25) == pytest.approx(0.75)
    assert clock.wait_s(now=9.9, lead_s=0.25) == 0.0


def test_a_new_active_dispatcher_starts_after_any_slot_its_predecessor_could_have_given() -> None:
    # Given a predecessor that handed out slots up to now + lead + one chunk span
    clock = SlotClock()
    # When this dispatcher starts at t=50
    clock.start(50.0, lead_s=0.25, span_s=0.24)
    # Then its first slot lies beyond that horizon
    assert clock.allocate(1, 0.0125, now=50.0) == pytest.approx(50.49)


def test_lateness_is_judged_against_the_tolerance() -> None:
    assert not is_late(10.0, 10.008, 0.008)
    assert is_late(10.0, 10.009, 0.008)
    assert not is_late(None, 1e12, 0.008)


@given(
    rates=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=6),
    sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30),
)
def test_slots_stay_below_the_rate_across_rate_changes(rates: list[int], sizes: list[int]) -> None:
    # Given chunks allocated while the rate changes between them
    clock = SlotClock(started=True)
    slots: list[tuple[float, int]] = []
    now = 0.0
    for i, size in enumerate(sizes):
        rate = rates[i % len(rates)]
        interval = slot_interval(rate, 0.015)
        first = clock.allocate(size, interval, now)
        slots.extend((first + k * interval, rate) for k in range(size))
        now += 0.01
    # Then consecutive slots are never closer than the faster of the two rates allows
    ordered = sorted(slots)
    for (a, rate_a), (b, rate_b) in itertools.pairwise(ordered):
        assert b - a >= min(slot_interval(rate_a, 0.015), slot_interval(rate_b, 0.015)) - 1e-9
