"""Supervised background tasks: a task that dies is reported down, restarted with back-off, and one
that keeps dying takes the process down."""

from __future__ import annotations

import asyncio
import itertools

from shared.metrics import BACKGROUND_TASK_UP
from shared.supervision import Supervisor


def gauge(service: str, task: str) -> float:
    return BACKGROUND_TASK_UP.labels(service, task)._value.get()


async def test_a_task_that_dies_is_reported_down_then_restarted_with_growing_back_off() -> None:
    # Given a supervised task that dies twice, then runs
    starts: list[float] = []
    running = asyncio.Event()

    async def job() -> None:
        starts.append(asyncio.get_running_loop().time())
        if len(starts) <= 2:
            raise ConnectionResetError("lost")
        running.set()
        await asyncio.sleep(3600)

    given_up: list[bool] = []
    supervisor = Supervisor("svc-a", restart_base_s=0.1, max_deaths=5, give_up=lambda: given_up.append(True))
    supervisor.spawn("loop", job)

    # Then while it waits to be restarted it is down, for /readyz and the gauge
    await asyncio.sleep(0.05)
    assert supervisor.down() == ["loop"] and not await supervisor.check()
    assert gauge("svc-a", "loop") == 0

    # And it is restarted after 0.1 s, then 0.2 s, and stays up
    await asyncio.wait_for(running.wait(), 5)
    assert await supervisor.check() and gauge("svc-a", "loop") == 1
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19, gaps
    assert not given_up
    await supervisor.stop()
    assert gauge("svc-a", "loop") == 0


async def test_a_task_that_keeps_dying_takes_the_process_down() -> None:
    # Given a task that returns at once every time (its loop is meant never to end)
    calls = 0

    async def job() -> None:
        nonlocal calls
        calls += 1

    given_up = asyncio.Event()
    supervisor = Supervisor("svc-b", restart_base_s=0.01, max_deaths=3, give_up=given_up.set)
    supervisor.spawn("loop", job)

    # Then after its third death in a row the supervisor gives up on the process
    await asyncio.wait_for(given_up.wait(), 5)
    assert calls == 3
    assert not await supervisor.check()
    await supervisor.stop()


async def test_a_supervisor_can_run_its_tasks_again_after_a_stop() -> None:
    supervisor = Supervisor("svc-c", give_up=lambda: None)
    for _ in range(2):
        supervisor.spawn("loop", lambda: asyncio.sleep(3600))
        await asyncio.sleep(0)
        assert await supervisor.check()
        await supervisor.stop()
