"""Retention of the frequency caps' entries: a number's ``contact_frequency`` entry whose every
claim is older than the longest cap window a tenant can set is deleted.

A claim trims the claims that left its tenant's window only from the entry of the number it
claims, so the entry of a number no campaign goes to again stayed for ever and the table grew with
every number a capped tenant ever messaged. The age is the longest window any tenant could have
(``frequency_cap_days`` is at most 365: migration 1301 and the tenant API), never a tenant's own:
a tenant may lengthen its window at any time, and an entry deleted under the shorter one would let
a number be messaged again too soon.

The leader of the sender's maintenance runs it (the sender owns the table): at most one slice of
``SLICE_ROWS`` entries per maintenance pass, so a backlog never holds a pass (lease expiry and
reconciliation wait behind it) for long; slices follow pass after pass while they come back full,
then nothing until ``interval_s`` has passed. Finding no old entry reads the whole table (no index
on claim times: it would cost every capped claim's upsert), which once an interval is cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

from services.sender import queries
from shared.db import AllTenants
from shared.logging import get_logger

log = get_logger(__name__)

# The longest window a tenant's frequency cap can have (the check on tenants.frequency_cap_days).
LONGEST_CAP_DAYS = 365
SLICE_ROWS = 5000


class FrequencyRetention:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        interval_s: float,
        slice_rows: int = SLICE_ROWS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # The entries of every tenant: a cross-tenant statement of the maintenance pass.
        self._all = AllTenants(pool)
        self._interval_s = interval_s
        self._slice_rows = slice_rows
        self._monotonic = monotonic
        self._next_at = 0.0

    async def run_if_due(self) -> int:
        """Delete one slice when one is due; how many entries were deleted."""
        now = self._monotonic()
        if now < self._next_at:
            return 0
        deleted = await self.delete_slice()
        # A full slice may have left more behind: the next pass takes the next slice.
        self._next_at = now if deleted >= self._slice_rows else now + self._interval_s
        if deleted:
            log.info("old frequency-cap entries deleted", entries=deleted, older_than_days=LONGEST_CAP_DAYS)
        return deleted

    async def delete_slice(self) -> int:
        status = await self._all.execute(
            queries.DELETE_OLD_FREQUENCY_ENTRIES, LONGEST_CAP_DAYS, self._slice_rows
        )
        return int(status.split()[-1])
