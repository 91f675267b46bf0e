"""Abuse limits of the tenant and operator APIs: requests per API key and per client address in
fixed windows, and a lockout with exponential back-off after repeated failed authentication
from one address. Over a limit the answer is 429 with ``Retry-After``.

The counters live in PostgreSQL, not Redis: every replica of every service already holds a pool
to it, so limits hold across replicas with no new moving part to deploy, secure and watch, and a
counter update is one small statement on an unlogged table (no WAL). Redis would be faster per
request, but the APIs limited here are not the hot path (webhooks are not limited here; they
are authenticated by signature and gated by tenant before any query).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import asyncpg

from shared.logging import get_logger

log = get_logger(__name__)

CHECK = """
WITH w AS (SELECT date_bin(make_interval(secs => $4), now(), timestamptz 'epoch') AS start),
hit AS (
    INSERT INTO rate_limit_hits (subject, window_start, hits)
    SELECT s, w.start, 1 FROM unnest($1::text[]) AS s, w
    ON CONFLICT (subject, window_start) DO UPDATE SET hits = rate_limit_hits.hits + 1
    RETURNING subject, hits
)
SELECT
    (SELECT extract(epoch FROM locked_until - now())::float8 FROM auth_lockouts
     WHERE subject = $3 AND locked_until > now()) AS locked_for_s,
    (SELECT coalesce(bool_or(hit.hits > l.lim), false)
     FROM hit JOIN unnest($1::text[], $2::int[]) AS l(subject, lim) USING (subject)) AS over,
    extract(epoch FROM (SELECT start FROM w) + make_interval(secs => $4) - now())::float8 AS window_left_s
"""

RECORD_FAILURE = """
INSERT INTO auth_lockouts (subject, failures, last_failure_at) VALUES ($1, 1, now())
ON CONFLICT (subject) DO UPDATE SET
    failures = CASE WHEN auth_lockouts.last_failure_at < now() - make_interval(secs => $2)
                    THEN 1 ELSE auth_lockouts.failures + 1 END,
    last_failure_at = now()
RETURNING failures
"""

LOCK = "UPDATE auth_lockouts SET locked_until = now() + make_interval(secs => $2) WHERE subject = $1"

FORGET_SUCCESSFUL = """
DELETE FROM auth_lockouts WHERE subject = $1 AND (locked_until IS NULL OR locked_until <= now())
"""

PRUNE_WINDOWS = "DELETE FROM rate_limit_hits WHERE window_start < now() - make_interval(secs => $1)"
PRUNE_LOCKOUTS = """
DELETE FROM auth_lockouts
WHERE last_failure_at < now() - make_interval(secs => $1) AND (locked_until IS NULL OR locked_until < now())
"""

PRUNE_EVERY_S = 60.0


def lockout_s(failures: int, allowed: int, max_s: float, base_s: float = 1.0) -> float:
    """Seconds an address is locked out after its ``failures``-th consecutive failure: none up to
    ``allowed``, then ``base_s`` doubling with each further failure, capped at ``max_s``."""
    if failures <= allowed:
        return 0.0
    return float(min(max_s, base_s * 2.0 ** min(failures - allowed - 1, 30)))


def key_subject(key_hash: str) -> str:
    # Only (part of) the key's stored hash: the counters table must not hold usable keys.
    return "key:" + key_hash[:32]


@dataclass(frozen=True)
class Limits:
    window_s: int
    per_key: int
    per_address: int
    failures_allowed: int
    lockout_base_s: float
    lockout_max_s: float
    failure_memory_s: float


class LimitExceeded(Exception):
    def __init__(self, retry_after_s: float, reason: str) -> None:
        super().__init__(reason)
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        self.reason = reason


class AbuseLimits:
    """One surface's limits (``tenant_api`` or ``operator_api``) over the shared counters."""

    def __init__(self, pool: asyncpg.Pool, surface: str, limits: Limits) -> None:
        self._pool = pool
        self.surface = surface
        self._limits = limits
        self._pruned_at = time.monotonic()

    def _address_subject(self, address: str) -> str:
        return f"{self.surface}:addr:{address}"

    async def check(self, address: str, key_hash: str | None = None) -> None:
        """Count this request (of the API key with ``key_hash``, if any); raise LimitExceeded when
        the address is locked out or a limit is hit."""
        subjects = [self._address_subject(address)]
        limits = [self._limits.per_address]
        if key_hash:
            subjects.append(f"{self.surface}:{key_subject(key_hash)}")
            limits.append(self._limits.per_key)
        row = await self._pool.fetchrow(CHECK, subjects, limits, subjects[0], self._limits.window_s)
        await self._maybe_prune()
        if row["locked_for_s"] is not None:
            raise LimitExceeded(row["locked_for_s"], "locked_out")
        if row["over"]:
            raise LimitExceeded(row["window_left_s"], "rate_limited")

    async def failed(self, address: str) -> None:
        """Remember a failed authentication from ``address``; past the allowance, lock it out."""
        subject = self._address_subject(address)
        failures = await self._pool.fetchval(RECORD_FAILURE, subject, self._limits.failure_memory_s)
        limits = self._limits
        locked_for = lockout_s(failures, limits.failures_allowed, limits.lockout_max_s, limits.lockout_base_s)
        if locked_for:
            await self._pool.execute(LOCK, subject, locked_for)
            log.warning(
                "client locked out after failed authentication",
                surface=self.surface,
                client=address,
                failures=failures,
                locked_for_s=locked_for,
            )

    async def succeeded(self, address: str) -> None:
        """A correct credential clears the address's count of failures (not a running lockout)."""
        await self._pool.execute(FORGET_SUCCESSFUL, self._address_subject(address))

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        await self._pool.execute(PRUNE_WINDOWS, float(2 * self._limits.window_s))
        await self._pool.execute(PRUNE_LOCKOUTS, self._limits.failure_memory_s)
