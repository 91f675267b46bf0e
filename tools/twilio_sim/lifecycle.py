"""The status sequence a message goes through after creation, and its callbacks."""

from __future__ import annotations

import random
from typing import NamedTuple

from .errors import async_final_status
from .faults import FaultConfig


class Emission(NamedTuple):
    """One status change ``offset_s`` after creation, and whether it is called back."""

    offset_s: float
    status: str
    error_code: int | None
    deliver: bool
    dropped: bool = False


def _step(config: FaultConfig, rng: random.Random) -> float:
    return (config.status_delay_ms + rng.random() * config.status_jitter_ms) / 1000.0


def _transitions(
    config: FaultConfig, async_error: int | None, rng: random.Random
) -> list[tuple[float, str, int | None]]:
    at = _step(config, rng)
    if async_error is not None:
        if async_final_status(async_error) == "failed":
            return [(at, "failed", async_error)]
        return [(at, "sent", None), (at + _step(config, rng), "undelivered", async_error)]
    steps: list[tuple[float, str, int | None]] = [(at, "sent", None)]
    if rng.random() < config.delivered_ratio:
        at += _step(config, rng)
        steps.append((at, "delivered", None))
        if rng.random() < config.read_ratio:
            steps.append((at + _step(config, rng), "read", None))
    return steps


def plan(
    config: FaultConfig, async_error: int | None, has_callback: bool, rng: random.Random
) -> list[Emission]:
    """Status changes with their callback fate (dropped, duplicated, reordered)."""
    deliver = has_callback and config.callbacks_enabled
    emissions = []
    for at, status, code in _transitions(config, async_error, rng):
        dropped = deliver and config.p_drop_callback > 0 and rng.random() < config.p_drop_callback
        emissions.append(Emission(at, status, code, deliver and not dropped, dropped))
    if deliver and len(emissions) > 1 and config.p_out_of_order > 0 and rng.random() < config.p_out_of_order:
        # Swap the timing of two neighbouring events so the later status is called back first.
        i = rng.randrange(len(emissions) - 1)
        first, second = emissions[i], emissions[i + 1]
        emissions[i] = first._replace(offset_s=second.offset_s)
        emissions[i + 1] = second._replace(offset_s=first.offset_s)
    if deliver and config.p_duplicate_callback > 0:
        for emission in list(emissions):
            if emission.deliver and rng.random() < config.p_duplicate_callback:
                emissions.append(emission._replace(offset_s=emission.offset_s + _step(config, rng)))
    return emissions
