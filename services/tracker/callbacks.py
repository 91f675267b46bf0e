"""Persisting status callbacks: replay filtering, monotonic recipient updates, the event log,
orphans, opt-out suppressions, and recipients sent back to wait by a refusal a callback reported
— one transaction per batch.

The receipts are inserted in the same transaction as their effects, so a batch that fails leaves
no receipt behind and its redelivery is not mistaken for a replay.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from services.tracker import queries
from services.tracker.status import (
    DEFAULT_WAITS,
    Callback,
    Plan,
    RecipientRow,
    RefusalWaits,
    plan_callbacks,
)
from shared.db import all_tenants_transaction

EVENT_SOURCE = "callback"
SUPPRESSION_SOURCE = "error_code"


@dataclass
class BatchResult:
    statuses: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[int] = field(default_factory=Counter)
    replays: int = 0
    orphans: int = 0
    transitions: int = 0
    suppressed: int = 0
    matched: int = 0
    # Recipients a callback's refusal (131048, 131056) sent back to wait for another send.
    deferred: list[RecipientRow] = field(default_factory=list)


async def record_callbacks(
    pool: asyncpg.Pool, received: Sequence[tuple[str, Callback]], waits: RefusalWaits = DEFAULT_WAITS
) -> BatchResult:
    """Persist callbacks given with their dedupe keys; replays (in the batch or of earlier
    batches) change nothing."""
    unique: dict[tuple[str, str], Callback] = {}
    for key, callback in received:
        unique.setdefault((callback.tenant_id, key), callback)
    result = BatchResult(replays=len(received) - len(unique))
    # A batch holds callbacks of many tenants (one transaction per batch is what keeps up with
    # the callback rate): a cross-tenant path, every statement of it keyed on each row's tenant.
    async with all_tenants_transaction(pool) as conn:
        fresh_keys = await conn.fetch(
            queries.INSERT_RECEIPTS, [tenant for tenant, _ in unique], [key for _, key in unique]
        )
        fresh_set = {(row["tenant_id"], row["dedupe_key"]) for row in fresh_keys}
        fresh = [callback for ident, callback in unique.items() if ident in fresh_set]
        result.replays += len(unique) - len(fresh)
        if not fresh:
            return result
        plan = await _plan(conn, fresh, waits)
        result.suppressed = await _write(conn, plan)
        kept = await _keep_orphans(conn, plan.orphans)
    result.statuses.update(callback.status for callback in fresh)
    result.error_codes.update(callback.error_code for callback in fresh if callback.error_code is not None)
    result.orphans = kept
    # A replay with a fresh idempotency token passes the receipts but not the orphans' unique key.
    result.replays += len(plan.orphans) - kept
    result.transitions = len(plan.transitions)
    result.matched = len(plan.matched)
    result.deferred = plan.deferred
    return result


async def match_orphans(
    pool: asyncpg.Pool, *, limit: int = 1000, waits: RefusalWaits = DEFAULT_WAITS
) -> BatchResult:
    """Apply kept callbacks whose recipient now has its SID and a settled send. A recipient one of
    them sends back to wait is published again by the senders' sweep."""
    result = BatchResult()
    async with all_tenants_transaction(pool) as conn:
        rows = await conn.fetch(queries.LOCK_MATCHABLE_ORPHANS, limit)
        callbacks = [
            callback
            for row in rows
            if (callback := Callback.from_params(row["tenant_id"], row["payload"], row["at"], row["id"]))
            is not None
        ]
        if not callbacks:
            return result
        plan = await _plan(conn, callbacks, waits)
        result.suppressed = await _write(conn, plan)
        await conn.execute(queries.MARK_ORPHANS_MATCHED, [c.orphan_id for c in plan.matched])
    result.matched = len(plan.matched)
    result.transitions = len(plan.transitions)
    result.deferred = plan.deferred
    return result


async def _plan(conn: asyncpg.Connection, callbacks: Sequence[Callback], waits: RefusalWaits) -> Plan:
    pairs = sorted({(c.tenant_id, c.message_sid) for c in callbacks})
    records = await conn.fetch(
        queries.LOCK_RECIPIENTS_BY_SID, [tenant for tenant, _ in pairs], [sid for _, sid in pairs]
    )
    rows = [
        RecipientRow(
            id=r["id"],
            tenant_id=r["tenant_id"],
            campaign_id=r["campaign_id"],
            phone_e164=r["phone_e164"],
            state=r["state"],
            error_code=r["error_code"],
            error_message=r["error_message"],
            delivered_at=r["delivered_at"],
            read_at=r["read_at"],
            failed_at=r["failed_at"],
            campaign_state=r["campaign_state"],
        )
        for r in records
    ]
    sids = {(r["tenant_id"], r["twilio_sid"]): r["id"] for r in records}
    return plan_callbacks(callbacks, rows, sids, waits)


async def _write(conn: asyncpg.Connection, plan: Plan) -> int:
    """Write the plan's effects; return how many numbers were newly suppressed."""
    changed = plan.changed_rows()
    if changed:
        await conn.execute(
            queries.UPDATE_RECIPIENTS,
            [row.id for row in changed],
            [row.state for row in changed],
            [row.error_code for row in changed],
            [row.error_message for row in changed],
            [row.delivered_at for row in changed],
            [row.read_at for row in changed],
            [row.failed_at for row in changed],
            [row.attempts_change for row in changed],
            [row.next_attempt_at for row in changed],
        )
        moves = plan.transitions
        await conn.execute(
            queries.INSERT_EVENTS,
            [t.tenant_id for t in moves],
            [t.campaign_id for t in moves],
            [t.recipient_id for t in moves],
            [t.from_state for t in moves],
            [t.to_state for t in moves],
            [t.error_code for t in moves],
            [t.detail for t in moves],
            [t.at for t in moves],
            EVENT_SOURCE,
        )
    if not plan.suppressions:
        return 0
    added = await conn.fetch(
        queries.ADD_SUPPRESSIONS,
        [s.tenant_id for s in plan.suppressions],
        [s.phone_e164 for s in plan.suppressions],
        [SUPPRESSION_SOURCE] * len(plan.suppressions),
        [s.reason for s in plan.suppressions],
    )
    return len(added)


async def _keep_orphans(conn: asyncpg.Connection, orphans: Sequence[Callback]) -> int:
    """Keep callbacks for later matching, one per (tenant, message SID, status); how many were new."""
    if not orphans:
        return 0
    status = await conn.execute(
        queries.INSERT_ORPHANS,
        [o.tenant_id for o in orphans],
        [o.message_sid for o in orphans],
        [o.status for o in orphans],
        [o.error_code for o in orphans],
        [dict(o.params) for o in orphans],
        [o.at for o in orphans],
    )
    return int(status.split()[-1])
