"""Supervised background tasks: none of a service's loops dies in silence.

A task that raises (or returns: these loops are meant to run until the service stops) is logged
with its traceback, reported down (``wce_background_task_up`` = 0 and ``/readyz`` answering 503)
and started again after a back-off that doubles with each death in a row. A task that keeps dying
— ``max_deaths`` in a row, each within ``healthy_after_s`` of its start — takes the process down
(SIGTERM, a graceful stop), so that its supervisor (systemd, Kubernetes, honcho) starts a fresh
one instead of leaving a process that answers but does no work.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.failures import retry_delay_s
from shared.logging import get_logger
from shared.metrics import BACKGROUND_TASK_UP

log = get_logger(__name__)

Job = Callable[[], Awaitable[object]]


@dataclass
class _Supervised:
    name: str
    job: Job
    task: asyncio.Task[None] | None = None
    up: bool = False
    deaths_in_a_row: int = 0


def stop_process() -> None:
    """Ask this process to stop gracefully (uvicorn turns SIGTERM into a lifespan shutdown)."""
    os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    def __init__(
        self,
        service: str,
        *,
        restart_base_s: float = 0.5,
        restart_max_s: float = 30.0,
        max_deaths: int = 10,
        healthy_after_s: float = 60.0,
        give_up: Callable[[], None] = stop_process,
    ) -> None:
        self._service = service
        self._restart_base_s = restart_base_s
        self._restart_max_s = restart_max_s
        self._max_deaths = max_deaths
        self._healthy_after_s = healthy_after_s
        self._give_up = give_up
        self._tasks: dict[str, _Supervised] = {}

    def spawn(self, name: str, job: Job) -> None:
        """Run ``job()`` in the background until ``stop``, restarting it whenever it ends."""
        if name in self._tasks:
            raise ValueError(f"a background task named {name!r} already runs")
        supervised = _Supervised(name, job)
        self._tasks[name] = supervised
        supervised.task = asyncio.create_task(self._keep_running(supervised), name=f"supervised-{name}")

    def down(self) -> list[str]:
        """Names of the tasks not running now (dead, waiting to be restarted)."""
        return [name for name, supervised in self._tasks.items() if not supervised.up]

    async def check(self) -> bool:
        """Readiness: every background task is running."""
        return not self.down()

    async def _keep_running(self, supervised: _Supervised) -> None:
        gauge = BACKGROUND_TASK_UP.labels(self._service, supervised.name)
        while True:
            started = time.monotonic()
            supervised.up = True
            gauge.set(1)
            try:
                await supervised.job()
            except asyncio.CancelledError:
                supervised.up = False
                gauge.set(0)
                raise
            except Exception:
                log.exception("background task died", task=supervised.name)
            else:
                log.error("background task ended", task=supervised.name)
            supervised.up = False
            gauge.set(0)
            if time.monotonic() - started >= self._healthy_after_s:
                supervised.deaths_in_a_row = 0
            supervised.deaths_in_a_row += 1
            if supervised.deaths_in_a_row >= self._max_deaths:
                log.critical(
                    "background task keeps dying, stopping the process",
                    task=supervised.name,
                    deaths=supervised.deaths_in_a_row,
                )
                self._give_up()
                return
            delay = retry_delay_s(
                supervised.deaths_in_a_row, base_s=self._restart_base_s, max_s=self._restart_max_s
            )
            log.warning("background task restarting", task=supervised.name, in_s=delay)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        tasks = [supervised.task for supervised in self._tasks.values() if supervised.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
