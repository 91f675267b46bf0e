"""Which tenants' webhooks are admitted: the active ones, known without a query per request.

Forged webhooks name random tenant ids; they must not each cost a database query. The ids of
the active tenants are held in memory and reloaded every few seconds by a background job (a
deactivated tenant's webhooks are refused from the next reload on). An id not in the set may
belong to a tenant created since the last reload, so it is looked up — but only within a small
budget of lookups per second shared by all unknown ids; past it an unknown id is refused without
touching the database, so a flood of forged ids costs at most ``lookups_per_s`` tiny queries a
second whatever its size.
"""

from __future__ import annotations

import time

import asyncpg

from services.tracker import queries
from shared.single_flight import SingleFlight


class LookupBudget:
    """A token bucket: ``rate`` lookups a second, at most ``burst`` at once. No I/O."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class ActiveTenants:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        lookups_per_s: float = 5.0,
        lookup_burst: float = 20.0,
        timeout_s: float = 5.0,
    ) -> None:
        self._pool = pool
        self._budget = LookupBudget(lookups_per_s, lookup_burst)
        self._timeout_s = timeout_s
        self._ids: set[str] = set()
        self._lookups: SingleFlight[str, bool] = SingleFlight()

    async def admits(self, tenant_id: str) -> bool:
        """``tenant_id`` in canonical form (lower-case, hyphenated)."""
        if tenant_id in self._ids:
            return True
        # A new tenant's first campaign brings many callbacks at once: they share one lookup.
        if not self._lookups.running(tenant_id) and not self._budget.take():
            return False
        return await self._lookups.run(tenant_id, lambda: self._look_up(tenant_id))

    async def _look_up(self, tenant_id: str) -> bool:
        active = bool(await self._pool.fetchval(queries.TENANT_IS_ACTIVE, tenant_id, timeout=self._timeout_s))
        if active:
            self._ids.add(tenant_id)
        return active

    async def reload(self) -> None:
        rows = await self._pool.fetch(queries.ACTIVE_TENANT_IDS, timeout=self._timeout_s)
        self._ids = {str(row["id"]) for row in rows}
