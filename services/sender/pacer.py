"""The sender's side of adaptive pacing: it sees Twilio's "too fast" answers and backs the
tenant's shared effective rate off (``shared/pacing.py``); dispatchers apply it to new slots.

The share of requests refused is measured over about the last second of this sender's creates
for the tenant (the current and the previous one-second bucket): one chunk alone may be wholly
refused while the second as a whole mostly got through.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from services.sender import queries
from shared.db import OneTenant
from shared.logging import get_logger
from shared.pacing import DECREASE_GAP_S, MIN_FACTOR, decrease_multiplier

log = get_logger(__name__)


@dataclass
class _Buckets:
    second: int
    attempted: int = 0
    refused: int = 0
    previous_attempted: int = 0
    previous_refused: int = 0


class RefusalWindow:
    """Creates and rate refusals per tenant over about the last second."""

    def __init__(self) -> None:
        self._tenants: dict[UUID, _Buckets] = {}

    def add(self, tenant_id: UUID, attempted: int, refused: int, now: float | None = None) -> tuple[int, int]:
        """Record a chunk's creates; return (refused, attempted) over the window."""
        second = int(now if now is not None else time.monotonic())
        buckets = self._tenants.get(tenant_id)
        if buckets is None:
            buckets = self._tenants[tenant_id] = _Buckets(second)
        if second != buckets.second:
            recent = second == buckets.second + 1
            buckets.previous_attempted = buckets.attempted if recent else 0
            buckets.previous_refused = buckets.refused if recent else 0
            buckets.second, buckets.attempted, buckets.refused = second, 0, 0
        buckets.attempted += attempted
        buckets.refused += refused
        return (
            buckets.refused + buckets.previous_refused,
            buckets.attempted + buckets.previous_attempted,
        )


class Pacer:
    def __init__(self, pool: asyncpg.Pool, recovery_per_s: float) -> None:
        self._pool = pool
        self._recovery_per_s = recovery_per_s
        self._window = RefusalWindow()

    async def observe(
        self, tenant_id: UUID, *, attempted: int, refused: int, retry_after_s: float | None
    ) -> None:
        """A chunk's creates of a rate-limited tenant: back off when some were refused for rate."""
        refused_recently, attempted_recently = self._window.add(tenant_id, attempted, refused)
        if not refused:
            return
        multiplier = decrease_multiplier(refused_recently, attempted_recently)
        try:
            factor = await OneTenant(self._pool).fetchval(
                tenant_id,
                queries.BACK_OFF,
                tenant_id,
                multiplier,
                retry_after_s,
                self._recovery_per_s,
                MIN_FACTOR,
                DECREASE_GAP_S,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The next refusal tries again; meanwhile retries keep every recipient.
            log.warning("pacing back-off not recorded", tenant_id=str(tenant_id), error=repr(exc))
            return
        if factor is not None:
            log.info(
                "tenant rate backed off",
                tenant_id=str(tenant_id),
                factor=round(factor, 3),
                refused=refused_recently,
                attempted=attempted_recently,
                retry_after_s=retry_after_s,
            )
