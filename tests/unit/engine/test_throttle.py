"""Slot arithmetic: spacing, chunk spans, the one-second bound and hand-over between dispatchers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.throttle import (
    MARGIN_PER_TOLERANCE_S,
    AdaptiveTiming,
    SlotClock,
    cheapest_tolerance,
    chunk_length,
    is_late,
    max_starts_per_window,
    slot_interval,
)


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


def _busiest_window(starts: list[float], window_s: float = 1.0) -> int:
    ordered = sorted(starts)
    best = 0
    low = 0
    for high, start in enumerate(ordered):
        while start - ordered[low] >= window_s:
            low += 1
        best = max(best, high - low + 1)
    return best


@given(
    rate=st.sampled_from([1, 5, 80, 250, 400, 1000]),
    chunks=st.lists(
        st.tuples(
            st.floats(min_value=0.008, max_value=0.1),  # the chunk's tolerance
            st.integers(min_value=1, max_value=40),  # its size
            st.lists(st.booleans(), min_size=40, max_size=40),  # which of its messages start last-moment late
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_no_second_holds_more_than_the_rate_while_the_tolerance_moves(
    rate: int, chunks: list[tuple[float, int, list[bool]]]
) -> None:
    # Given chunks slotted back to back while the tolerance rises and falls (the spacing margin
    # keeping its distance above it), each message starting on its slot or as late as allowed
    timing = AdaptiveTiming(0.25, 0.008)
    clock = SlotClock(started=True)
    starts: list[float] = []
    for tolerance, size, late in chunks:
        interval = slot_interval(rate, 0.015 + MARGIN_PER_TOLERANCE_S * (tolerance - timing.base_tolerance_s))
        first = clock.allocate(size, interval, 0.0, tolerance)
        starts.extend(first + k * interval + (tolerance if late[k] else 0.0) for k in range(size))
    # Then no window of one second holds more starts than the rate
    assert _busiest_window(starts) <= rate


def test_denser_slots_after_a_fall_in_tolerance_wait_for_the_late_starts_before_them() -> None:
    # Given a chunk slotted with a 100 ms tolerance, all of it starting that late, then chunks
    # slotted with the configured 8 ms (denser slots), all starting on time
    rate, clock, starts = 400, SlotClock(started=True), []
    for tolerance, late in [(0.1, True)] + [(0.008, False)] * 15:
        interval = slot_interval(rate, 0.015 + MARGIN_PER_TOLERANCE_S * (tolerance - 0.008))
        first = clock.allocate(40, interval, 0.0, tolerance)
        starts.extend(first + k * interval + (tolerance if late else 0.0) for k in range(40))
    # Then no second holds more than the rate
    assert _busiest_window(starts) <= rate


def test_the_lead_and_tolerance_grow_to_what_senders_report_and_return_with_a_half_life() -> None:
    timing = AdaptiveTiming(0.25, 0.008, max_lead_s=1.0, max_tolerance_s=0.1, half_life_s=10.0)
    # Given a chunk that reached its sender 0.15 s after its first slot, messages waking 30 ms late
    timing.observe(100.0, arrived_late_s=0.15, woke_late_s=0.03)
    # Then the lead covers that latency with head-room, and the tolerance the lateness
    assert timing.lead_s(100.0) == pytest.approx((0.25 + 0.15) * 1.5)
    assert timing.tolerance_s(100.0) == pytest.approx(0.03)
    # And the spacing margin grows by the tolerance's growth (a start may come that much later)
    assert timing.margin(0.015, 100.0) == pytest.approx(0.015 + (0.03 - 0.008))
    # When nothing more is reported for a half-life, half the excess is gone
    assert timing.tolerance_s(110.0) == pytest.approx(0.008 + (0.03 - 0.008) / 2)
    # And reports never stretch either past its maximum
    timing.observe(111.0, arrived_late_s=30.0, woke_late_s=5.0)
    assert timing.lead_s(111.0) == pytest.approx(1.0)
    assert timing.tolerance_s(111.0) == pytest.approx(0.1)
    # And a report smaller than the current value shrinks nothing
    timing.observe(111.0, arrived_late_s=0.01, woke_late_s=0.001)
    assert timing.tolerance_s(111.0) == pytest.approx(0.1)


def test_the_cheapest_tolerance_absorbs_a_busy_machines_usual_lateness_but_not_a_stray_outlier() -> None:
    # Given 20 wake-ups of which 3 came 11-13 ms late, past an 8 ms tolerance (3 slots of 20 lost)
    usual = [0.001] * 17 + [0.011, 0.012, 0.013]
    # Then a 13 ms tolerance costs less (5 ms = 0.5 % of the rate) than the 15 % lost
    assert cheapest_tolerance(usual, 0.008) == pytest.approx(0.013)
    # When one wake-up of 20 came 80 ms late (a stray stall)
    stray = [0.001] * 19 + [0.08]
    # Then widening the spacing by 7 % to save 5 % is not worth it
    assert cheapest_tolerance(stray, 0.008) == pytest.approx(0.008)
    # And wake-ups all within the tolerance, or none at all, ask for nothing more
    assert cheapest_tolerance([0.002, 0.007], 0.008) == 0.008
    assert cheapest_tolerance([], 0.008) == 0.008


def test_the_cheapest_tolerance_never_leaves_a_costlier_share_of_wake_ups_beyond_it() -> None:
    # Given lateness spread evenly over 0-40 ms, and a tolerance of 8 ms
    lateness = [i / 1000 for i in range(41)]
    chosen = cheapest_tolerance(lateness, 0.008)

    # Then what it costs is no more than what any other candidate would have
    def cost(tolerance: float) -> float:
        beyond = sum(1 for value in lateness if value > tolerance) / len(lateness)
        return MARGIN_PER_TOLERANCE_S * (tolerance - 0.008) + beyond

    candidates = [value for value in [0.008, *lateness] if value >= 0.008]
    assert all(cost(chosen) <= cost(candidate) + 1e-12 for candidate in candidates)
    assert cost(chosen) < cost(0.008)
