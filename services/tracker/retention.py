"""Retention: delete message events, callback receipts, kept callbacks, inbound messages (the
people's phone numbers and words) and finished outbound webhook deliveries older than an age.

    python -m services.tracker.retention --older-than-days 90

Receipts only guard against replays, which come within minutes; kept callbacks that found no
recipient in that time never will. Deleting in slices keeps each statement's locks short.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
import typer

from services.tracker import outbound_queries, queries
from shared.db import AllTenants, create_pool
from shared.logging import configure_logging, get_logger
from shared.settings import get_settings

log = get_logger(__name__)

SLICE_ROWS = 10_000


@dataclass(frozen=True)
class Deleted:
    events: int
    receipts: int
    orphans: int
    inbound: int
    webhook_deliveries: int = 0


def cutoff(now: datetime, older_than_days: int) -> datetime:
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    return now - timedelta(days=older_than_days)


async def _delete_in_slices(pool: asyncpg.Pool, statement: str, before: datetime) -> int:
    total = 0
    while True:
        # Retention spans tenants: each slice as the cross-tenant role.
        status = await AllTenants(pool).execute(statement, before, SLICE_ROWS)
        count = int(status.split()[-1])
        total += count
        if count < SLICE_ROWS:
            return total


async def purge(pool: asyncpg.Pool, *, before: datetime) -> Deleted:
    return Deleted(
        events=await _delete_in_slices(pool, queries.DELETE_EVENTS_BEFORE, before),
        receipts=await _delete_in_slices(pool, queries.DELETE_RECEIPTS_BEFORE, before),
        orphans=await _delete_in_slices(pool, queries.DELETE_ORPHANS_BEFORE, before),
        inbound=await _delete_in_slices(pool, queries.DELETE_INBOUND_BEFORE, before),
        webhook_deliveries=await _delete_in_slices(
            pool, outbound_queries.DELETE_FINISHED_DELIVERIES_BEFORE, before
        ),
    )


async def _run(older_than_days: int) -> Deleted:
    settings = get_settings()
    before = cutoff(datetime.now(UTC), older_than_days)
    pool = await create_pool(settings.database_url, min_size=1, max_size=1, retry_s=settings.startup_retry_s)
    try:
        return await purge(pool, before=before)
    finally:
        await pool.close()


def main(
    older_than_days: Annotated[
        int | None,
        typer.Option(
            min=1, help="Delete what is older than this many days (default: WCE_EVENT_RETENTION_DAYS)."
        ),
    ] = None,
) -> None:
    settings = get_settings()
    configure_logging("tracker-retention", settings.log_level)
    days = older_than_days or settings.event_retention_days
    deleted = asyncio.run(_run(days))
    log.info(
        "retention done",
        older_than_days=days,
        events=deleted.events,
        receipts=deleted.receipts,
        orphans=deleted.orphans,
        inbound=deleted.inbound,
        webhook_deliveries=deleted.webhook_deliveries,
    )
    typer.echo(
        f"deleted {deleted.events} events, {deleted.receipts} receipts, {deleted.orphans} kept callbacks,"
        f" {deleted.inbound} inbound messages, {deleted.webhook_deliveries} finished webhook deliveries"
    )


if __name__ == "__main__":
    typer.run(main)
