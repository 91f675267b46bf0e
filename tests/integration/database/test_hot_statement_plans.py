"""The hot statements do the same small work per message however stale the statistics are.

A campaign's rows, its credit debits and its callbacks are all written faster than autovacuum
analyses them, so the planner plans the engine's per-chunk statements with statistics that still
count a handful of rows. Each statement must then still find its rows by key, not walk what the
statistics hide: once a settlement read every debit of the tenant for each message settled (a
100,000-message campaign fell to 200 messages a second), and the tracker's callback batch walked
the whole campaign for each callback (19.5 s for 241 callbacks).

Here, on a database of the test's own with autovacuum off for the tables involved, never analysed
or analysed holding 200 small campaigns, a campaign of 20,000 sent and debited rows is written,
and the settlement of a chunk of 100 and the callback batch's lock of 100 recipients run as their
services' roles under ``EXPLAIN ANALYZE``. The rows of those growing tables their plans read (and
rows joins filtered out), over all loops, stay within a small multiple of the chunk, where a walk
reads millions.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.sender import queries as sender_queries
from services.tracker import queries as tracker_queries
from shared.schema import migrate_dsn
from tests.integration.database.plans import as_role, insert_tenant, rows_read

pytestmark = pytest.mark.asyncio(loop_scope="session")

SENT = 20_000
CHUNK = 100
# Rows of the growing tables a plan may read per message of the chunk: its row, its debit, its
# event (300 for a chunk when found by key; 20,100 to 8 million when walked).
ROWS_PER_MESSAGE = 10
# The tables that grow with every message: the rows a plan reads of them are what must stay small.
PER_MESSAGE_TABLES = {"recipients", "credit_ledger", "message_events"}
TABLES = ("recipients", "credit_ledger", "credit_accounts", "campaigns", "message_events", "tenants")


@pytest.fixture(params=["never analysed", "analysed with 200 small campaigns"])
async def stale_campaign(
    request: pytest.FixtureRequest, scratch_database: str
) -> AsyncIterator[tuple[asyncpg.Connection, dict[str, Any]]]:
    """A tenant with a campaign of ``SENT`` sent and debited recipients and ``CHUNK`` more being
    sent, on tables never analysed (a new deployment's first campaign) or analysed when they held
    only small campaigns."""
    await migrate_dsn(scratch_database)
    conn = await asyncpg.connect(scratch_database)
    try:
        for table in TABLES:
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
        if request.param != "never analysed":
            await small_campaigns_before(conn)
            for table in TABLES:
                await conn.execute(f"ANALYZE {table}")
        tenant_id, campaign_id = await insert_tenant(conn), uuid.uuid4()
        await conn.execute(
            "INSERT INTO credit_accounts (tenant_id, plan_monthly, plan_balance, purchased_balance)"
            " VALUES ($1, 0, 0, 1000000)",
            tenant_id,
        )
        await conn.execute(
            "INSERT INTO campaigns (id, tenant_id, name, audience, template, state)"
            " VALUES ($1, $2, 'c', '{}', '{}', 'running')",
            campaign_id,
            tenant_id,
        )
        await conn.execute(
            "INSERT INTO recipients"
            " (tenant_id, campaign_id, phone_e164, state, attempts, twilio_sid, sent_at)"
            " SELECT $1, $2, '+1415' || lpad(g::text, 7, '0'), 'sent', 1, 'SM' || md5(g::text), now()"
            " FROM generate_series(1, $3::int) g",
            tenant_id,
            campaign_id,
            SENT,
        )
        await conn.execute(
            "INSERT INTO credit_ledger (tenant_id, kind, bucket, amount, campaign_id, recipient_id)"
            " SELECT $1, 'debit', 'purchased', -1, $2, id FROM recipients WHERE campaign_id = $2",
            tenant_id,
            campaign_id,
        )
        chunk = await conn.fetch(
            "INSERT INTO recipients (tenant_id, campaign_id, phone_e164, state, attempts, claimed_at,"
            " lease_until, credit_held)"
            " SELECT $1, $2, '+1416' || lpad(g::text, 7, '0'), 'sending', 1, now(),"
            " now() + interval '1 minute', true FROM generate_series(1, $3::int) g RETURNING id, claimed_at",
            tenant_id,
            campaign_id,
            CHUNK,
        )
        sids = [
            r["twilio_sid"]
            for r in await conn.fetch(
                "SELECT twilio_sid FROM recipients WHERE campaign_id = $1 AND state = 'sent'"
                " ORDER BY random() LIMIT $2",
                campaign_id,
                CHUNK,
            )
        ]
        yield conn, {"tenant_id": tenant_id, "chunk": chunk, "sids": sids}
    finally:
        await conn.close()


async def small_campaigns_before(conn: asyncpg.Connection) -> None:
    """What the statistics saw: 200 campaigns of 5 sent recipients each (so a campaign "has" about
    5 rows, and every row a SID)."""
    tenant_id = await insert_tenant(conn, "before")
    await conn.execute(
        "INSERT INTO campaigns (id, tenant_id, name, audience, template, state)"
        " SELECT gen_random_uuid(), $1, 'c' || g, '{}', '{}', 'completed' FROM generate_series(1, 200) g",
        tenant_id,
    )
    await conn.execute(
        "INSERT INTO recipients (tenant_id, campaign_id, phone_e164, state, attempts, twilio_sid, sent_at)"
        " SELECT $1, c.id, '+1417' || lpad(g::text, 7, '0'), 'sent', 1, 'SM' || md5(c.id::text || g), now()"
        " FROM campaigns c, generate_series(1, 5) g WHERE c.tenant_id = $1",
        tenant_id,
    )


def rows_touched(node: dict[str, Any]) -> float:
    """Rows of the per-message tables a plan node and those below it read (produced or filtered
    out), and rows any join filtered out, over all their loops."""
    return rows_read(node, PER_MESSAGE_TABLES)


async def explained(conn: asyncpg.Connection, statement: str, *args: Any) -> dict[str, Any]:
    plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *args)
    return json.loads(plan)[0]["Plan"]


async def test_a_settlement_reads_each_messages_debit_by_its_key_not_the_tenants_debits(
    stale_campaign: tuple[asyncpg.Connection, dict[str, Any]],
) -> None:
    conn, given = stale_campaign
    chunk = given["chunk"]
    # When the chunk of 100 is settled as sent, as the sender's role in its tenant's transaction
    async with as_role(conn, "wce_sender", given["tenant_id"]):
        plan = await explained(
            conn,
            sender_queries.SETTLE,
            given["tenant_id"],
            [r["id"] for r in chunk],
            [r["claimed_at"] for r in chunk],
            ["sent"] * CHUNK,
            [f"SM{uuid.uuid4().hex}" for _ in chunk],
            [None] * CHUNK,
            [None] * CHUNK,
            [False] * CHUNK,
            [None] * CHUNK,
            "sender",
            [False] * CHUNK,
            [None] * CHUNK,
        )
        debited = await conn.fetchval(
            "SELECT count(*) FROM credit_ledger WHERE kind = 'debit' AND recipient_id = ANY($1::bigint[])",
            [r["id"] for r in chunk],
        )

    # Then every message was settled and debited once, and the plan touched a few rows per message
    touched = rows_touched(plan)
    print(f"\nsettling {CHUNK} beside {SENT:,} debits touched {touched:,.0f} rows")
    assert debited == CHUNK
    assert touched <= ROWS_PER_MESSAGE * CHUNK


async def test_a_callback_batch_finds_each_recipient_by_its_sid_not_by_walking_the_campaign(
    stale_campaign: tuple[asyncpg.Connection, dict[str, Any]],
) -> None:
    conn, given = stale_campaign
    # When the tracker locks the recipients of 100 callbacks, as its cross-tenant role
    async with as_role(conn, "wce_tracker_all_tenants"):
        plan = await explained(
            conn,
            tracker_queries.LOCK_RECIPIENTS_BY_SID,
            [given["tenant_id"]] * CHUNK,
            given["sids"],
        )
        found = await conn.fetch(
            tracker_queries.LOCK_RECIPIENTS_BY_SID, [given["tenant_id"]] * CHUNK, given["sids"]
        )

    # Then it found each of them, with its campaign's state, touching a few rows per callback
    touched = rows_touched(plan)
    print(f"\nlocking {CHUNK} of {SENT:,} recipients by SID touched {touched:,.0f} rows")
    assert len(found) == CHUNK and {r["campaign_state"] for r in found} == {"running"}
    assert touched <= ROWS_PER_MESSAGE * CHUNK
