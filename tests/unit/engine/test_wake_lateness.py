"""The sender's probe of how late its event loop wakes timers (services/sender/wake_lateness.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.sender.wake_lateness import WakeLateness


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
