"""Tenants' Twilio auth tokens for signature checks, decrypted once and cached briefly.

Every webhook needs its tenant's token, so the cache keeps the hot path free of database round
trips and decryption. Concurrent misses for one tenant share one load; unknown tenants are
remembered for a short while so forged requests cannot turn into a query each, and the cache is
bounded so forged tenant ids cannot grow it without end. A token that
fails a signature may have been rotated: it is reloaded, at most once per ``refresh_after_s``.
"""

from __future__ import annotations

import time

import asyncpg

from services.tracker import queries
from shared.crypto import SecretBox
from shared.single_flight import SingleFlight


class TokenCache:
    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        *,
        ttl_s: float = 60.0,
        miss_ttl_s: float = 5.0,
        refresh_after_s: float = 5.0,
        timeout_s: float = 5.0,
        max_entries: int = 10_000,
    ) -> None:
        self._pool = pool
        self._box = box
        self._ttl_s = ttl_s
        self._miss_ttl_s = miss_ttl_s
        self._refresh_after_s = refresh_after_s
        self._timeout_s = timeout_s
        self._entries: dict[str, tuple[str | None, float]] = {}
        self._max_entries = max_entries
        self._loads: SingleFlight[str, str | None] = SingleFlight()

    async def get(self, tenant_id: str) -> str | None:
        entry = self._entries.get(tenant_id)
        if entry is not None:
            token, loaded_at = entry
            ttl = self._ttl_s if token is not None else self._miss_ttl_s
            if time.monotonic() - loaded_at < ttl:
                return token
        return await self._load(tenant_id)

    async def refresh(self, tenant_id: str) -> str | None:
        """The token reloaded, when the cached one is old enough to doubt; otherwise None."""
        entry = self._entries.get(tenant_id)
        if entry is not None and time.monotonic() - entry[1] < self._refresh_after_s:
            return None
        return await self._load(tenant_id)

    def _remember(self, tenant_id: str, token: str | None) -> None:
        """Cache the answer; requests for random tenant ids must not grow the cache without end."""
        now = time.monotonic()
        if tenant_id not in self._entries and len(self._entries) >= self._max_entries:
            for key, (cached, loaded_at) in list(self._entries.items()):
                if now - loaded_at >= (self._ttl_s if cached is not None else self._miss_ttl_s):
                    del self._entries[key]
            if len(self._entries) >= self._max_entries:
                # Still full of fresh entries: forget the oldest half.
                for key in list(self._entries)[: len(self._entries) // 2]:
                    del self._entries[key]
        self._entries[tenant_id] = (token, now)

    async def _load(self, tenant_id: str) -> str | None:
        return await self._loads.run(tenant_id, lambda: self._fetch(tenant_id))

    async def _fetch(self, tenant_id: str) -> str | None:
        encrypted = await self._pool.fetchval(queries.TENANT_AUTH_TOKEN, tenant_id, timeout=self._timeout_s)
        token = self._box.decrypt(encrypted) if encrypted is not None else None
        self._remember(tenant_id, token)
        return token
