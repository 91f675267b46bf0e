"""What keeping a campaign's recipient counts per state (migration 1600's triggers) costs the
engine's writes, per message: the PostgreSQL CPU of a message's whole path — the sender's claim
and settle, then its delivered and read callbacks in the tracker's batches — with the triggers
firing and without them.

Two tenants, each with a running campaign of ``--recipients`` pending rows (with customers; credits
off, see below). Each runs the path in chunks of ``--chunk``
messages with the services' own statements on a connection of its own; on the ``without``
connection ``session_replication_role = replica`` keeps ordinary triggers from firing. That role
skips foreign-key checks too, so the path writes no row that has one (no credit debits): the two
variants then differ by the state-count triggers alone. The variants take turns chunk by chunk, so
the shared machine's load falls on both alike. The figure is the backend's CPU time (user +
system, from /proc: the database runs on this machine), which leaves out time spent waiting for a
CPU. Folding the deltas (the tracker's pass, once a second) is timed on its own, per delta folded.

    python -m bench.state_count_cost [--recipients 40000] [--chunk 100]

Results: ``bench/results/state_count_cost.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time
import uuid
from typing import Any

import asyncpg

from bench.harness import Environment, write_results
from bench.statement_cost import backend_cpu_s, seed_running_campaign
from services.sender.queries import CLAIM, SETTLE
from services.tracker.queries import INSERT_EVENTS, INSERT_RECEIPTS, LOCK_RECIPIENTS_BY_SID, UPDATE_RECIPIENTS
from services.tracker.state_counts import fold_state_deltas
from shared.db import create_pool
from shared.schema import migrate_dsn
from tools.stack import ROOT

RESULTS = ROOT / "bench" / "results" / "state_count_cost.json"
LEASE_S = 60.0
WINDOW_S = 86_400
VARIANTS = ("with", "without")


async def one_chunk(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, campaign_id: uuid.UUID, ids: list[int]
) -> int:
    """A chunk's claim, settle (sent), then its delivered and read callbacks as the tracker writes a
    batch (receipts, rows locked by SID, the update, the events), with the services' statements."""
    claimed = await conn.fetch(CLAIM, tenant_id, campaign_id, ids, LEASE_S, False, WINDOW_S, False)
    rows = [r for r in claimed if r["id"] is not None]
    n = len(rows)
    now = time.time()
    sids = ["SM" + secrets.token_hex(16) for _ in rows]
    await conn.fetch(
        SETTLE,
        tenant_id,
        [r["id"] for r in rows],
        [r["claimed_at"] for r in rows],
        ["sent"] * n,
        sids,
        [None] * n,
        [None] * n,
        [False] * n,
        [None] * n,
        "sender",
        [False] * n,
        [now] * n,
    )
    for state, previous in (("delivered", "sent"), ("read", "delivered")):
        async with conn.transaction():
            await conn.fetch(INSERT_RECEIPTS, [tenant_id] * n, [f"{sid}:{state}" for sid in sids])
            locked = await conn.fetch(LOCK_RECIPIENTS_BY_SID, [tenant_id] * n, sids)
            await conn.execute(
                UPDATE_RECIPIENTS,
                [r["id"] for r in locked],
                [state] * n,
                [None] * n,
                [None] * n,
                [now] * n,
                [now if state == "read" else None] * n,
                [None] * n,
                [0] * n,
                [None] * n,
            )
            await conn.execute(
                INSERT_EVENTS,
                [tenant_id] * n,
                [campaign_id] * n,
                [r["id"] for r in locked],
                [previous] * n,
                [state] * n,
                [None] * n,
                [None] * n,
                [now] * n,
                "twilio",
            )
    return n


async def measure(database_url: str, recipients: int, chunk: int) -> dict[str, Any]:
    setup = await asyncpg.connect(database_url)
    try:
        seeded = {
            name: await seed_running_campaign(setup, recipients, 1_000_000 * (i + 1))
            for i, name in enumerate(VARIANTS)
        }
        await setup.execute("VACUUM ANALYZE")
    finally:
        await setup.close()
    connections = {name: await asyncpg.connect(database_url) for name in VARIANTS}
    await connections["without"].execute("SET session_replication_role = replica")
    try:
        ids = {
            name: [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM recipients WHERE campaign_id = $1 ORDER BY id", seeded[name][1]
                )
            ]
            for name, conn in connections.items()
        }
        pids = {name: await conn.fetchval("SELECT pg_backend_pid()") for name, conn in connections.items()}
        cpu = dict.fromkeys(VARIANTS, 0.0)
        messages = dict.fromkeys(VARIANTS, 0)
        for index in range(recipients // chunk):
            order = VARIANTS if index % 2 == 0 else tuple(reversed(VARIANTS))
            for name in order:
                before = backend_cpu_s(pids[name])
                messages[name] += await one_chunk(
                    connections[name], *seeded[name], ids[name][index * chunk : (index + 1) * chunk]
                )
                cpu[name] += backend_cpu_s(pids[name]) - before
        deltas = await connections["with"].fetchval("SELECT count(*) FROM recipient_state_deltas")
    finally:
        for conn in connections.values():
            await conn.close()
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            fold_pid = await conn.fetchval("SELECT pg_backend_pid()")
        before = backend_cpu_s(fold_pid)
        folded = await fold_state_deltas(pool)
        fold_cpu = backend_cpu_s(fold_pid) - before
    finally:
        await pool.close()
    report: dict[str, Any] = {
        name: {
            "messages": messages[name],
            "backend_cpu_us_per_message": round(cpu[name] / messages[name] * 1e6, 1),
        }
        for name in VARIANTS
    }
    extra = report["with"]["backend_cpu_us_per_message"] - report["without"]["backend_cpu_us_per_message"]
    report["extra_cpu_us_per_message"] = round(extra, 1)
    report["extra_share"] = round(extra / report["without"]["backend_cpu_us_per_message"], 4)
    report["deltas_per_message"] = round(deltas / messages["with"], 3)
    report["fold"] = {"deltas": folded, "cpu_us_per_delta": round(fold_cpu / max(folded, 1) * 1e6, 1)}
    return report


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    environment = Environment()
    try:
        await migrate_dsn(environment.database_url)
        report = await measure(environment.database_url, args.recipients, args.chunk)
    finally:
        environment.destroy()
    report.update({"recipients": args.recipients, "chunk": args.chunk, "load_average": os.getloadavg()})
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=40_000)
    parser.add_argument("--chunk", type=int, default=100)
    args = parser.parse_args()
    write_results(RESULTS, asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
