"""A tenant's suppression list: numbers that never get a message (opt-outs, blocks, manual).

Numbers are stored in E.164, normalised with the tenant's default region. Every change is also
written to ``suppression_events``. The sender checks the list when it claims each recipient, so a
number added here gets nothing from the moment the change commits, even mid-campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.segmenter.workers import row_work
from shared import metrics
from shared.db import OneTenant
from shared.http import InputError
from shared.phones import InvalidPhone, to_e164

MAX_IMPORT = 100_000

LIST = """
SELECT phone_e164, source, reason, created_at FROM suppressions
WHERE tenant_id = $1 AND ($2::text IS NULL OR phone_e164 > $2)
ORDER BY phone_e164
LIMIT $3
"""

GET = (
    "SELECT phone_e164, source, reason, created_at FROM suppressions WHERE tenant_id = $1 AND phone_e164 = $2"
)

ADD = """
WITH added AS (
    INSERT INTO suppressions (tenant_id, phone_e164, source, reason)
    SELECT $1, phone, $3, $4 FROM unnest($2::text[]) AS p(phone)
    ON CONFLICT (tenant_id, phone_e164) DO NOTHING
    RETURNING phone_e164
), logged AS (
    INSERT INTO suppression_events (tenant_id, phone_e164, action, source, reason)
    SELECT $1, phone_e164, 'added', $3, $4 FROM added
)
SELECT count(*) FROM added
"""

REMOVE = """
WITH removed AS (
    DELETE FROM suppressions WHERE tenant_id = $1 AND phone_e164 = $2 RETURNING phone_e164
), logged AS (
    INSERT INTO suppression_events (tenant_id, phone_e164, action, source, reason)
    SELECT $1, phone_e164, 'removed', 'api', $3 FROM removed
)
SELECT count(*) FROM removed
"""


class NotSuppressed(LookupError):
    pass


@dataclass(frozen=True)
class Suppression:
    phone_e164: str
    source: str
    reason: str | None
    created_at: datetime


def normalise(phones: list[str], region: str, field: str) -> list[str]:
    """E.164 forms of ``phones`` in order, or InputError naming every bad one (nothing changes)."""
    result, errors = [], []
    for index, raw in enumerate(phones):
        try:
            result.append(to_e164(raw, region))
        except InvalidPhone as exc:
            errors.append({"field": f"{field}.{index}", "message": str(exc)})
    if errors:
        raise InputError(errors)
    return result


def _distinct_e164(phones: list[str], region: str, field: str) -> list[str]:
    return list(dict.fromkeys(normalise(phones, region, field)))


async def list_suppressions(
    pool: asyncpg.Pool, tenant_id: UUID, *, after: str | None, limit: int
) -> list[Suppression]:
    return [
        Suppression(**dict(row))
        for row in await OneTenant(pool).fetch(tenant_id, LIST, tenant_id, after, limit)
    ]


async def get_suppression(pool: asyncpg.Pool, tenant_id: UUID, phone: str, region: str) -> Suppression:
    row = await OneTenant(pool).fetchrow(tenant_id, GET, tenant_id, normalise([phone], region, "phone")[0])
    if row is None:
        raise NotSuppressed(phone)
    return Suppression(**dict(row))


async def add(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    phones: list[str],
    *,
    region: str,
    source: str,
    reason: str | None,
    field: str,
) -> tuple[int, int]:
    """Suppress the numbers; returns (newly added, already suppressed)."""
    normalised = await row_work(len(phones), _distinct_e164, phones, region, field)
    added: int = await OneTenant(pool).fetchval(tenant_id, ADD, tenant_id, normalised, source, reason)
    if added:
        metrics.SUPPRESSION_CHANGES.labels("added", source).inc(added)
    return added, len(normalised) - added


async def remove(pool: asyncpg.Pool, tenant_id: UUID, phone: str, *, region: str, reason: str | None) -> None:
    normalised = normalise([phone], region, "phone")[0]
    if not await OneTenant(pool).fetchval(tenant_id, REMOVE, tenant_id, normalised, reason):
        raise NotSuppressed(phone)
    metrics.SUPPRESSION_CHANGES.labels("removed", "api").inc()
