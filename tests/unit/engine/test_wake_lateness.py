"""How late a sender wakes, and the late tolerance it asks its dispatcher for
(services/sender/wake_lateness.py): the probe of its event loop, and the pool of its paced
messages' wake-ups."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.sender.wake_lateness import PacedLateness, WakeLateness
from shared.throttle import AdaptiveTiming


def test_the_last_samples_decide_and_older_ones_are_forgotten() -> None:
    # Given a probe that keeps 20 samples, and a loop that once woke 15 ms late for a third of them
    probe = WakeLateness(0.008, samples=20)
    for index in range(20):
        probe.add(0.015 if index % 3 == 0 else 0.001)
    # Then the tolerance asked for covers that lateness
    assert probe.tolerance_s() == pytest.approx(0.015)
    # When the loop is quiet again for as many samples
    for _ in range(20):
        probe.add(0.0005)
    # Then nothing more than the current tolerance is asked for
    assert probe.tolerance_s() == 0.008


@pytest.mark.asyncio
async def test_a_loop_blocked_between_wake_ups_shows_as_lateness() -> None:
    # Given the probe running on this loop
    probe = WakeLateness(0.008, period_s=0.005, samples=10)
    task = asyncio.create_task(probe.run())
    try:
        # When the loop is blocked for 30 ms at a time, several times over
        for _ in range(6):
            await asyncio.sleep(0.006)
            time.sleep(0.03)  # noqa: ASYNC251 - the point: a loop that something blocks
        await asyncio.sleep(0.01)
    finally:
        task.cancel()
    # Then the probe asks for a tolerance of about what the blocks made it late
    assert probe.tolerance_s() >= 0.02


def test_a_stray_late_wake_up_among_many_buys_no_tolerance_but_a_busy_machines_lateness_does() -> None:
    # Given a sender whose last 199 paced messages woke within 2 ms of their slots
    paced = PacedLateness(0.008, samples=200)
    for index in range(199):
        paced.add(0.001 + (index % 10) / 10_000, now=100.0)
    # When one wake-up comes 40 ms late (a stray stall: 1 slot in 200 lost)
    paced.add(0.04, now=100.0)
    # Then widening the spacing by 3.2 % to save 0.5 % is not asked for
    assert paced.tolerance_s(now=100.0) == 0.008
    # When the machine gets busy and a whole chunk wakes 12 ms late (10 % of the slots)
    for _ in range(20):
        paced.add(0.012, now=100.1)
    # Then the 0.4 % of spacing that covers it is asked for at once
    assert paced.tolerance_s(now=100.1) == pytest.approx(0.012)


def test_wake_ups_older_than_the_pools_age_or_beyond_its_size_are_forgotten() -> None:
    paced = PacedLateness(0.008, samples=100, max_age_s=10.0)
    # Given a chunk that woke 15 ms late
    for _ in range(20):
        paced.add(0.015, now=100.0)
    assert paced.tolerance_s(now=100.0) == pytest.approx(0.015)
    # When ten seconds pass with no paced message, its wake-ups no longer count
    assert paced.tolerance_s(now=110.1) == 0.008
    # And when 100 newer wake-ups come in time, older ones leave the pool however recent
    for _ in range(20):
        paced.add(0.015, now=111.0)
    for _ in range(100):
        paced.add(0.001, now=111.5)
    assert paced.tolerance_s(now=111.5) == 0.008


def test_after_a_stall_the_dispatchers_tolerance_comes_back_while_chunks_keep_reporting() -> None:
    # Given a dispatcher's timing and a sender that reports after every paced chunk, as it does
    # on a busy machine (a chunk of 20 at 400/s every 50 ms)
    timing = AdaptiveTiming(0.25, 0.008, half_life_s=10.0)
    paced = PacedLateness(0.008)

    def chunk(now: float, lateness: list[float]) -> None:
        for value in lateness:
            paced.add(value, now=now)
        timing.observe(now, arrived_late_s=0.0, woke_late_s=paced.tolerance_s(now=now))

    # When one chunk is stalled 30 ms, and the chunks after it wake within 3 ms
    chunk(0.0, [0.03] * 20)
    assert timing.tolerance_s(0.0) == pytest.approx(0.03)
    now = 0.0
    while now < 30.0:
        now += 0.05
        chunk(now, [0.001, 0.002, 0.003] * 6 + [0.002, 0.002])
    # Then over three half-lives the tolerance (and with it the spacing) comes most of the way
    # back: the reports ask for what the recent wake-ups need, not for what is in force
    assert timing.tolerance_s(now) < 0.008 + (0.03 - 0.008) / 4
