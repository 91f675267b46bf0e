"""What the frequency cap adds to the sender's claim, per message: the PostgreSQL CPU that claiming
a chunk of 100 recipients costs for a tenant without a cap and for one with a cap.

Each variant has its own tenant and a running campaign of ``--recipients`` rows (with customers,
the credits account in use, like the engine benchmark's tenants). The capped tenant allows 5
messages per number in 30 days and each of its numbers already had one earlier campaign message
counted, so every claim reads and extends an existing entry (the common case of a tenant that
sends regularly). Each variant claims its rows in chunks of 100 on its own connection with the
sender's own statement, the variants taking turns chunk by chunk so that the shared machine's load
falls on both alike. The figure is the backend process's CPU time (user + system, read from
/proc: the database runs on this machine), which does not count time spent waiting for a CPU.

    python -m bench.claim_cost [--recipients 100000] [--chunks 400] [--before FILE]

``--before FILE`` adds a third variant, ``before``: a tenant without a cap claimed with the
statement in FILE (e.g. the claim of an earlier commit, written out with
``git show <commit>:services/sender/queries.py``), taking its turns with the other two.

Results: ``bench/results/claim_cost.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness import Environment, write_results
from bench.statement_cost import backend_cpu_s, seed_running_campaign
from services.sender.queries import CLAIM
from shared.schema import migrate_dsn
from tools.stack import ROOT

RESULTS = ROOT / "bench" / "results" / "claim_cost.json"
CHUNK = 100
LEASE_S = 60.0
# The messaging-limit window (unused: the tenants here have no tier), as the senders pass it.
MESSAGING_WINDOW_S = 86_400.0
CAP = (5, 30)


async def seed_tenant(
    conn: asyncpg.Connection, recipients: int, *, capped: bool, offset: int
) -> tuple[Any, Any]:
    """A tenant with a running campaign of ``recipients`` pending rows; returns (tenant, campaign).
    A ``capped`` tenant has a frequency cap, and yesterday's campaign counted one message for
    every number."""
    tenant_id, campaign_id = await seed_running_campaign(conn, recipients, offset)
    if capped:
        await conn.execute(
            "UPDATE tenants SET frequency_cap_messages = $2, frequency_cap_days = $3 WHERE id = $1",
            tenant_id,
            *CAP,
        )
        yesterday = uuid.uuid4()
        await conn.execute(
            "INSERT INTO campaigns (id, tenant_id, name, audience, template, state)"
            " VALUES ($1, $2, 'bench', '{}', '{\"body\": \"Hi\"}', 'completed')",
            yesterday,
            tenant_id,
        )
        await conn.execute(
            "INSERT INTO recipients (tenant_id, campaign_id, customer_id, phone_e164, state)"
            " SELECT $1, $2, id, phone_e164, 'delivered' FROM customers WHERE tenant_id = $1 ORDER BY id",
            tenant_id,
            yesterday,
        )
        await conn.execute(
            "INSERT INTO contact_frequency (tenant_id, phone_e164, recipient_ids, claimed_at)"
            " SELECT $1, phone_e164, ARRAY[id], ARRAY[now() - interval '1 day'] FROM recipients"
            " WHERE campaign_id = $2",
            tenant_id,
            yesterday,
        )
    return tenant_id, campaign_id


async def measure(
    database_url: str, recipients: int, chunks: int, statements: dict[str, str]
) -> dict[str, Any]:
    variants = list(statements)
    setup = await asyncpg.connect(database_url)
    try:
        seeded = {
            name: await seed_tenant(
                setup, recipients, capped=name == "capped", offset=1_000_000 * (index + 1)
            )
            for index, name in enumerate(variants)
        }
        await setup.execute("VACUUM ANALYZE")
    finally:
        await setup.close()
    connections = {name: await asyncpg.connect(database_url) for name in variants}
    try:
        ids = {}
        for name, conn in connections.items():
            tenant_id, campaign_id = seeded[name]
            ids[name] = [
                row["id"]
                for row in await conn.fetch(
                    "SELECT id FROM recipients WHERE campaign_id = $1 ORDER BY id LIMIT $2",
                    campaign_id,
                    chunks * CHUNK,
                )
            ]
        pids = {name: await conn.fetchval("SELECT pg_backend_pid()") for name, conn in connections.items()}
        cpu = dict.fromkeys(variants, 0.0)
        wall = dict.fromkeys(variants, 0.0)
        claimed = dict.fromkeys(variants, 0)
        for chunk in range(chunks):
            order = variants if chunk % 2 == 0 else list(reversed(variants))
            for name in order:
                tenant_id, campaign_id = seeded[name]
                batch = ids[name][chunk * CHUNK : (chunk + 1) * CHUNK]
                before_cpu, before = backend_cpu_s(pids[name]), time.perf_counter()
                rows = await connections[name].fetch(
                    statements[name], tenant_id, campaign_id, batch, LEASE_S, True, MESSAGING_WINDOW_S, False
                )
                wall[name] += time.perf_counter() - before
                cpu[name] += backend_cpu_s(pids[name]) - before_cpu
                claimed[name] += sum(1 for row in rows if row["id"] is not None)
    finally:
        for conn in connections.values():
            await conn.close()
    report: dict[str, Any] = {}
    for name in variants:
        report[name] = {
            "claimed": claimed[name],
            "backend_cpu_us_per_message": round(cpu[name] / claimed[name] * 1e6, 1),
            "wall_ms_per_chunk": round(wall[name] / chunks * 1e3, 2),
        }
    if {"capped", "uncapped"} <= set(variants):
        extra = (
            report["capped"]["backend_cpu_us_per_message"] - report["uncapped"]["backend_cpu_us_per_message"]
        )
        report["capped_extra_cpu_us_per_message"] = round(extra, 1)
    return report


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    environment = Environment()
    try:
        await migrate_dsn(environment.database_url)
        statements = {"uncapped": CLAIM, "capped": CLAIM}
        if args.before:
            statements["before"] = args.before.read_text()
        report = await measure(environment.database_url, args.recipients, args.chunks, statements)
    finally:
        environment.destroy()
    report.update(
        {
            "recipients": args.recipients,
            "chunks": args.chunks,
            "chunk_size": CHUNK,
            "load_average": os.getloadavg(),
        }
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--before", type=Path, help="a file with an earlier claim statement to compare with")
    args = parser.parse_args()
    write_results(RESULTS, asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
