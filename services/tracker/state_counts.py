"""Folding the campaigns' recipient state deltas into their counts (migration 1600).

Every write of recipients appends its per-state changes to ``recipient_state_deltas``; progress
reads add the deltas not folded yet to the folded counts, so the fewer there are, the cheaper the
read. This pass folds them every second in slices. One fold runs at a time across tracker
replicas (a transaction-scoped advisory lock; a replica that finds it taken skips its turn), and
folding never waits on the writers: they only append, and the fold only deletes what it adds.
"""

from __future__ import annotations

import asyncpg

from services.tracker import queries
from shared.db import all_tenants_transaction

FOLD_INTERVAL_S = 1.0
# Deltas folded per transaction: a slice's locks and its statement stay short.
FOLD_SLICE_ROWS = 20_000
# Enough slices to catch up after an outage in a few passes, without one pass holding on forever.
FOLD_MAX_SLICES = 50
LOCK_SQL = "SELECT pg_try_advisory_xact_lock(hashtext('wce.recipient_state_counts'), 0)"


async def fold_state_deltas(pool: asyncpg.Pool, *, slice_rows: int = FOLD_SLICE_ROWS) -> int:
    """Fold pending deltas into the counts; the number folded (0 when another fold holds the lock)."""
    total = 0
    for _ in range(FOLD_MAX_SLICES):
        # Folding spans tenants: the cross-tenant role.
        async with all_tenants_transaction(pool) as conn:
            if not await conn.fetchval(LOCK_SQL):
                return total
            counted = await conn.fetch(queries.FOLD_STATE_DELTAS, slice_rows)
            emptied = [row for row in counted if row["n"] == 0]
            if emptied:
                await conn.execute(
                    queries.DROP_EMPTY_STATE_COUNTS,
                    [row["campaign_id"] for row in emptied],
                    [row["state"] for row in emptied],
                )
        folded = counted[0]["deltas"] if counted else 0
        total += folded
        if folded < slice_rows:
            break
    return total
