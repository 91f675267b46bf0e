"""Who may publish for a tenant: the broker-validated ``user_id`` of a ``booking.*`` or
``campaign.*`` message must be a user the operator allowed for the tenant the message names.

RabbitMQ checks the ``user_id`` property against the publishing connection's user and refuses a
mismatch, so ``user_id`` cannot be forged; a message without one proves nothing and is refused.
The engine's own user (the one in ``WCE_AMQP_URL``; the engine stamps it on everything it
publishes, e.g. the senders' auto-pause commands) may act for every tenant. Answers are cached
for a few seconds: a revoked permission stops within that time.
"""

from __future__ import annotations

import time
from uuid import UUID

import asyncpg
from yarl import URL

from shared.broker import PoisonMessage, broker_addresses
from shared.db import OneTenant

ALLOWED = "SELECT EXISTS (SELECT 1 FROM broker_publishers WHERE username = $1 AND tenant_id = $2)"
CACHE_S = 5.0
MAX_CACHED = 10_000


def engine_user(amqp_url: str) -> str:
    return URL(broker_addresses(amqp_url)[0]).user or "guest"


class PublisherNotAllowed(PoisonMessage):
    """Parked: the message's publisher may not act for the tenant it names."""


class PublisherCheck:
    def __init__(self, pool: asyncpg.Pool, *, engine_user: str, enabled: bool) -> None:
        self._pool = pool
        self._engine_user = engine_user
        self.enabled = enabled
        self._cache: dict[tuple[str, UUID], tuple[bool, float]] = {}

    async def require(self, user_id: str | None, tenant_id: UUID) -> None:
        """Raise PublisherNotAllowed unless ``user_id`` may act for ``tenant_id``."""
        if not self.enabled or user_id == self._engine_user:
            return
        if not user_id:
            raise PublisherNotAllowed(
                f"no user_id: the publisher of a message for tenant {tenant_id} is unknown"
            )
        if not await self._allowed(user_id, tenant_id):
            raise PublisherNotAllowed(f"broker user {user_id!r} may not publish for tenant {tenant_id}")

    async def _allowed(self, user_id: str, tenant_id: UUID) -> bool:
        now = time.monotonic()
        cached = self._cache.get((user_id, tenant_id))
        if cached is not None and now - cached[1] < CACHE_S:
            return cached[0]
        allowed = bool(await OneTenant(self._pool).fetchval(tenant_id, ALLOWED, user_id, tenant_id))
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[(user_id, tenant_id)] = (allowed, now)
        return allowed
