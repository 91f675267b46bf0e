"""Audience benchmark on the data of ``bench.generate_bookings`` (1M customers, 5M appointments).

Runs the real segmenter as a process against the benchmark database and a broker vhost of its
own, then measures through its HTTP API:

- preview p50 for each segment, unfiltered and with filters (targets 250 ms and 1 s);
- a campaign of the whole million: time from the start request to the first recipient event on
  the tenant's dispatch queue (target 2 s) and to the end of the snapshot (target 15 s);
- the segmenter's peak RSS meanwhile (target 300 MB);

and EXPLAIN ANALYZE of the slowest preview's counting query. Results go to
``bench/results/audience.json``; the data set is generated first when missing (a few minutes).

``--cold`` first measures the previews on the data set as a bulk load leaves it, never analysed
nor vacuumed: the first preview, which finds the tables stale and has them analysed and vacuumed
(by the owner's vacuum process, ``shared.audience_vacuum``, which runs beside the segmenter
unless ``--no-vacuum-process``), and then the p50 of every preview; then it runs
``VACUUM (ANALYZE)`` and measures everything above, so the two are side by side (``cold`` and the
figures prefixed ``cold_``, against the same targets). The loaded data set is kept in a database
of its own (``<name>_loaded``, generated without its final ``VACUUM (ANALYZE)`` when missing) and
each cold run works on a fresh file copy of it, which takes seconds where generating takes
minutes. A copy starts with empty statistics counters: the segmenter then knows the tables are
unanalysed and unvacuumed from their never having been, as after a restore from files.

``--imported`` measures the same previews right after the big tenant's data set (its 1M
customers, 5M appointments, services, locations, staff, statuses and suppressions) was imported
through the segmenter's own bulk API, in batches of 10,000 as a booking sync sends them, into a
database of its own (``<name>_imported``, new each run): the first preview after the import's
last answer and the p50 of every preview (``imported`` and the figures prefixed ``imported_``,
against the same targets), and how long the import took. The import answers once it has
analysed and vacuumed what it left stale, so it pays; the previews after it should not.

    python -m bench.audience_bench [--cold] [--imported] [--no-vacuum-process] [--runs 5] [--dsn postgresql://…/wce_bench]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import psutil

from bench.generate_bookings import (
    BENCH_DSN,
    BIG_TENANT,
    CLOCK,
    TENANT,
    TIMEZONE,
    generate,
    loaded,
    never_analysed,
    vacuum_analyze,
)
from services.segmenter.audience.model import Audience
from services.segmenter.audience.query import preview_counts_query
from services.segmenter.audience.statistics import AUDIENCE_TABLES
from shared import audience_vacuum, topology
from shared.apikeys import display_prefix, hash_api_key, new_api_key
from shared.schema import migrate_dsn
from tools.stack import ManagedProcess, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "audience.json"
CUSTOMERS = 1_000_000
APPOINTMENTS = 5_000_000
RUNS = 5
# A generous bound for one request: on a loaded machine an unvacuumed table's preview took 42 s.
REQUEST_TIMEOUT_S = 300
TARGETS = {
    "preview_unfiltered_ms": 250,
    "preview_filtered_ms": 1000,
    "snapshot_s": 15,
    "first_event_s": 2,
    "rss_mb": 300,
}
# Right after a load, the same targets: the first preview (unfiltered, and paying for the
# analysis) and every preview after it.
COLD_TARGETS = {
    "cold_first_preview_ms": 250,
    "cold_preview_unfiltered_ms": 250,
    "cold_preview_filtered_ms": 1000,
}
# Right after an import through the API: the same targets again.
IMPORTED_TARGETS = {
    "imported_first_preview_ms": 250,
    "imported_preview_unfiltered_ms": 250,
    "imported_preview_filtered_ms": 1000,
}
# Rows per bulk request (the API's maximum).
IMPORT_BATCH = 10_000

SEGMENTS: list[dict[str, Any]] = [
    {"segment": "recent_bookers"},
    {"segment": "upcoming"},
    {"segment": "first_time"},
    {"segment": "repeat"},
    {"segment": "lapsed"},
    {"segment": "cancelled_recent"},
    {"segment": "all_customers"},
    {"segment": "all_appointments"},
]
FILTERS: list[dict[str, Any]] = [
    {"service_ids": ["s1", "s2"]},
    {"location_ids": ["l1"], "statuses": ["approved"]},
    {"min_appointments": 3},
]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60, check=False)


async def _api_key(pool: asyncpg.Pool) -> str:
    key = new_api_key()
    await pool.execute(
        "INSERT INTO api_keys (tenant_id, key_hash, prefix) VALUES ($1, $2, $3)",
        BIG_TENANT,
        hash_api_key(key),
        display_prefix(key),
    )
    return key


async def _preview_ms(client: httpx.AsyncClient, body: dict[str, Any], runs: int) -> tuple[float, int]:
    timings, total = [], 0
    for run in range(runs + 1):
        began = time.perf_counter()
        response = await client.post("/v1/audiences/preview", json={**body, "as_of": CLOCK.isoformat()})
        elapsed = (time.perf_counter() - began) * 1000
        response.raise_for_status()
        total = response.json()["total"]
        if run:  # the first run warms the caches
            timings.append(elapsed)
    return statistics.median(timings), total


async def _previews(client: httpx.AsyncClient, runs: int) -> list[dict[str, Any]]:
    rows = []
    for segment in SEGMENTS:
        for filters in [{}, *FILTERS]:
            body = {**segment, **filters}
            p50, total = await _preview_ms(client, body, runs)
            rows.append(
                {"audience": body, "filtered": bool(filters), "p50_ms": round(p50, 1), "total": total}
            )
            print(f"preview {json.dumps(body):80s} p50 {p50:7.1f} ms  total {total:>9,}", flush=True)
    return rows


def _load_average() -> list[float]:
    return [round(value, 1) for value in os.getloadavg()]


async def _analyses(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT relname, analyze_count + autoanalyze_count AS n FROM pg_stat_user_tables"
        " WHERE relname = ANY ($1::text[])",
        list(AUDIENCE_TABLES),
    )
    return {row["relname"]: row["n"] for row in rows}


async def _first_preview(client: httpx.AsyncClient, label: str) -> dict[str, Any]:
    """The first segment's preview, timed once: the first request after a load or an import."""
    body = SEGMENTS[0]
    began = time.perf_counter()
    response = await client.post("/v1/audiences/preview", json={**body, "as_of": CLOCK.isoformat()})
    first_ms = (time.perf_counter() - began) * 1000
    response.raise_for_status()
    print(f"{label}: first preview {json.dumps(body)} {first_ms:7.1f} ms", flush=True)
    return {"audience": body, "ms": round(first_ms, 1), "total": response.json()["total"]}


async def _cold(client: httpx.AsyncClient, pool: asyncpg.Pool, runs: int) -> dict[str, Any]:
    """The first preview on the tables as loaded, then every preview right after it."""
    load_before = _load_average()
    before, vacuums_before = await _analyses(pool), await _vacuums(pool)
    first = await _first_preview(client, "cold")
    after, vacuums_after = await _analyses(pool), await _vacuums(pool)
    previews = await _previews(client, runs)
    return {
        "first_preview": first,
        "analysed_by_the_segmenter": sorted(table for table, n in after.items() if n > before.get(table, 0)),
        "vacuumed_meanwhile": sorted(
            table for table, n in vacuums_after.items() if n > vacuums_before.get(table, 0)
        ),
        "previews": previews,
        "load_average": {"before": load_before, "after": _load_average()},
    }


async def _data_set(pool: asyncpg.Pool) -> dict[str, int]:
    return {
        "customers": await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", BIG_TENANT),
        "appointments": await pool.fetchval(
            "SELECT count(*) FROM appointments WHERE tenant_id = $1", BIG_TENANT
        ),
    }


async def _explain(pool: asyncpg.Pool, body: dict[str, Any]) -> str:
    sql, params = preview_counts_query(
        Audience.model_validate(body), tenant_id=BIG_TENANT, now=CLOCK, tz=TIMEZONE
    )
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL jit = off")
        await conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        await conn.execute("SET LOCAL work_mem = '64MB'")
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *params)
    return "\n".join(row[0] for row in rows)


class PeakRss:
    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 1024 / 1024


async def _campaign(client: httpx.AsyncClient, pool: asyncpg.Pool, pid: int, amqp_url: str) -> dict[str, Any]:
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            topology.dispatch_queue_name(str(BIG_TENANT)),
            durable=True,
            arguments=topology.dispatch_queue(str(BIG_TENANT)).args(),
        )
        await queue.purge()
        first = asyncio.get_running_loop().create_future()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if not first.done():
                first.set_result(time.perf_counter())
            await message.ack()

        await channel.set_qos(prefetch_count=200)
        await queue.consume(on_message)
        rss = PeakRss(pid)
        began = time.perf_counter()
        response = await client.post(
            "/v1/campaigns",
            json={
                "name": f"bench {uuid.uuid4().hex[:6]}",
                "audience": {"segment": "all_customers"},
                "template": {"body": "Hi {customer_first_name}"},
                "start": True,
            },
            timeout=REQUEST_TIMEOUT_S,
        )
        response.raise_for_status()
        campaign_id = uuid.UUID(response.json()["id"])
        first_at = await asyncio.wait_for(first, timeout=REQUEST_TIMEOUT_S)
        while True:
            row = await pool.fetchrow(
                "SELECT snapshot_completed_at, total, started_at FROM campaigns WHERE id = $1", campaign_id
            )
            if row["snapshot_completed_at"] is not None:
                break
            await asyncio.sleep(0.02)
        done_at = time.perf_counter()
        peak = rss.stop()
        await client.post(f"/v1/campaigns/{campaign_id}/cancel", json={}, timeout=REQUEST_TIMEOUT_S)
        return {
            "recipients": row["total"],
            "first_event_s": round(first_at - began, 2),
            "snapshot_s": round(done_at - began, 2),
            "snapshot_server_s": round((row["snapshot_completed_at"] - row["started_at"]).total_seconds(), 2),
            "rss_mb": round(peak, 1),
        }
    finally:
        await connection.close()


async def _vacuums(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT relname, vacuum_count + autovacuum_count AS n FROM pg_stat_user_tables"
        " WHERE relname = ANY ($1::text[])",
        list(AUDIENCE_TABLES),
    )
    return {row["relname"]: row["n"] for row in rows}


async def _copy_of_the_load(dsn: str) -> None:
    """``dsn``'s database made a file copy of ``<name>_loaded``, the data set as its load left it."""
    server, name = dsn.rsplit("/", 1)
    await _kept_load(dsn)
    began = time.monotonic()
    await _replace_database(server, name, template=f"{name}_loaded")
    print(f"copied {name}_loaded to {name} in {time.monotonic() - began:.0f}s", flush=True)


async def _kept_load(dsn: str) -> str:
    """The DSN of ``<name>_loaded``, the data set as its load left it (generated when missing)."""
    server, name = dsn.rsplit("/", 1)
    source = f"{server}/{name}_loaded"
    if not (await loaded(source, CUSTOMERS) and await never_analysed(source)):
        await generate(source, CUSTOMERS, APPOINTMENTS, analyse=False)
    return source


async def _replace_database(server: str, name: str, template: str | None = None) -> None:
    """Drop database ``name``; with a template, make it anew as a file copy of that."""
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if template is not None:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY = FILE_COPY')
    finally:
        await admin.close()


async def _wait_listening(pool: asyncpg.Pool, process: ManagedProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await pool.fetchval(audience_vacuum.LISTENING, audience_vacuum.APPLICATION_NAME):
        if not process.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the vacuum process is not listening:\n{process.tail()}")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def _segmenter(
    dsn: str, pool: asyncpg.Pool, vacuum_process: bool
) -> AsyncIterator[tuple[int, ManagedProcess, str]]:
    """The segmenter on ``dsn`` (its port, process and broker URL), with the owner's vacuum
    process beside it unless told otherwise; both stopped and their vhost deleted afterwards. The
    vhost is named after the database: two data sets on one server never share queues."""
    vhost = dsn.rsplit("/", 1)[1]
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    amqp_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    port = free_port()
    env = {
        "WCE_ENVIRONMENT": "development",
        "WCE_DATABASE_URL": dsn,
        "WCE_AMQP_URL": amqp_url,
        "WCE_SEGMENTER_PORT": str(port),
        "WCE_CREDITS_ENABLED": "false",
        "WCE_LOG_LEVEL": "WARNING",
    }
    segmenter = ManagedProcess(
        "services.segmenter", env, f"http://127.0.0.1:{port}/healthz", RESULTS.parent / "logs"
    )
    vacuum = (
        ManagedProcess(
            "shared.audience_vacuum",
            {**env, "WCE_MIGRATION_DATABASE_URL": dsn, "WCE_LOG_LEVEL": "INFO"},
            None,
            RESULTS.parent / "logs",
        )
        if vacuum_process
        else None
    )
    try:
        segmenter.wait_healthy(120)
        if vacuum is not None:
            await _wait_listening(pool, vacuum, 120)
        yield port, segmenter, amqp_url
    finally:
        segmenter.stop()
        if vacuum is not None:
            vacuum.stop()
        _rabbitmqctl("delete_vhost", vhost)


def _client(port: int, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=REQUEST_TIMEOUT_S
    )


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    if response.status_code >= 400:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
    result: dict[str, Any] = response.json()
    return result


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


# The big tenant's data set as the bulk API takes it: references by external id.
EXPORTS: dict[str, str] = {
    "services": "SELECT external_id, name FROM services WHERE tenant_id = $1 ORDER BY id",
    "locations": "SELECT external_id, name FROM locations WHERE tenant_id = $1 ORDER BY id",
    "staff": "SELECT external_id, name FROM staff WHERE tenant_id = $1 ORDER BY id",
    "customers": (
        "SELECT external_id, first_name, last_name, phone_e164 AS phone FROM customers"
        " WHERE tenant_id = $1 ORDER BY id"
    ),
    "appointments": """
        SELECT a.external_id, c.external_id AS customer_id, s.external_id AS service_id,
               l.external_id AS location_id, st.external_id AS staff_id, a.starts_at, a.ends_at,
               a.created_at, a.status, a.status_changed_at
        FROM appointments a
        JOIN customers c ON c.id = a.customer_id
        LEFT JOIN services s ON s.id = a.service_id
        LEFT JOIN locations l ON l.id = a.location_id
        LEFT JOIN staff st ON st.id = a.staff_id
        WHERE a.tenant_id = $1 ORDER BY a.id
    """,
}
TIMESTAMPS = ("starts_at", "ends_at", "created_at", "status_changed_at")


def _row(kind: str, record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    if kind == "appointments":
        row.update({name: _iso(row[name]) for name in TIMESTAMPS})
    return {name: value for name, value in row.items() if value is not None}


async def _import_data_set(source: asyncpg.Connection, client: httpx.AsyncClient) -> dict[str, Any]:
    """Send the big tenant's data set from ``source`` through the bulk API, batch by batch."""
    statuses = await source.fetch(
        "SELECT name, counts_as_cancelled FROM appointment_statuses WHERE tenant_id = $1", BIG_TENANT
    )
    await _post(client, "/v1/booking/statuses:upsert", {"statuses": [dict(row) for row in statuses]})
    counts: dict[str, int] = {}
    flagged = 0
    async with source.transaction():
        for kind, sql in EXPORTS.items():
            began, counts[kind] = time.perf_counter(), 0
            cursor = await source.cursor(sql, BIG_TENANT)
            while records := await cursor.fetch(IMPORT_BATCH):
                body: dict[str, Any] = {"rows": [_row(kind, record) for record in records]}
                if kind == "customers":
                    body["invalid_phones"] = "flag"
                result = await _post(client, f"/v1/booking/{kind}:upsert", body)
                flagged += len(result.get("flagged", []))
                counts[kind] += len(records)
            print(f"imported {counts[kind]:,} {kind} in {time.perf_counter() - began:.0f}s", flush=True)
    phones = [
        row["phone_e164"]
        for row in await source.fetch(
            "SELECT phone_e164 FROM suppressions WHERE tenant_id = $1 ORDER BY phone_e164", BIG_TENANT
        )
    ]
    for start in range(0, len(phones), IMPORT_BATCH):
        await _post(client, "/v1/suppressions/import", {"phones": phones[start : start + IMPORT_BATCH]})
    counts["suppressions"] = len(phones)
    return {"rows": counts, "flagged_phones": flagged}


async def _imported(dsn: str, vacuum_process: bool, runs: int) -> dict[str, Any]:
    """The previews right after the data set was imported through the API into a new database."""
    server, name = dsn.rsplit("/", 1)
    source_dsn, target_dsn = await _kept_load(dsn), f"{server}/{name}_imported"
    await _replace_database(server, f"{name}_imported")
    await migrate_dsn(target_dsn)
    pool = await asyncpg.create_pool(target_dsn, min_size=1, max_size=2)
    source = await asyncpg.connect(source_dsn)
    assert pool is not None
    try:
        await pool.execute(TENANT, BIG_TENANT, "bench big", "AC" + BIG_TENANT.hex, TIMEZONE)
        key = await _api_key(pool)
        async with _segmenter(target_dsn, pool, vacuum_process) as (port, _, _):
            async with _client(port, key) as client:
                began = time.perf_counter()
                imported = await _import_data_set(source, client)
                import_s = time.perf_counter() - began
                print(f"imported the data set through the API in {import_s:.0f}s", flush=True)
                load_before = _load_average()
                first = await _first_preview(client, "imported")
                previews = await _previews(client, runs)
        return {
            **imported,
            "import_s": round(import_s, 1),
            "first_preview": first,
            "previews": previews,
            "load_average": {"before": load_before, "after": _load_average()},
        }
    finally:
        await source.close()
        await pool.close()


async def run(
    dsn: str, cold: bool, vacuum_process: bool, runs: int = RUNS, imported: bool = False
) -> dict[str, Any]:
    imported_result = await _imported(dsn, vacuum_process, runs) if imported else None
    if cold:
        await _copy_of_the_load(dsn)
    elif not await loaded(dsn, CUSTOMERS):
        await generate(dsn, CUSTOMERS, APPOINTMENTS)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    await pool.execute("DELETE FROM campaigns WHERE tenant_id = $1", BIG_TENANT)
    key = await _api_key(pool)
    data_set = await _data_set(pool)
    cold_result: dict[str, Any] | None = None
    try:
        async with _segmenter(dsn, pool, vacuum_process) as (port, segmenter, amqp_url):
            async with _client(port, key) as client:
                if cold:
                    cold_result = await _cold(client, pool, runs)
                    async with pool.acquire() as conn:
                        await vacuum_analyze(conn)
                load_before = _load_average()
                previews = await _previews(client, runs)
                campaign = await _campaign(client, pool, segmenter.proc.pid, amqp_url)
                load_after = _load_average()
        slowest = max(previews, key=lambda row: row["p50_ms"])
        plan = await _explain(pool, slowest["audience"])
    finally:
        await pool.close()
    unfiltered = [row["p50_ms"] for row in previews if not row["filtered"]]
    filtered = [row["p50_ms"] for row in previews if row["filtered"]]
    figures = {
        "preview_unfiltered_ms": max(unfiltered),
        "preview_filtered_ms": max(filtered),
        "snapshot_s": campaign["snapshot_s"],
        "first_event_s": campaign["first_event_s"],
        "rss_mb": campaign["rss_mb"],
    }
    targets = dict(TARGETS)
    if cold_result is not None:
        cold_previews = cold_result["previews"]
        figures |= {
            "cold_first_preview_ms": cold_result["first_preview"]["ms"],
            "cold_preview_unfiltered_ms": max(row["p50_ms"] for row in cold_previews if not row["filtered"]),
            "cold_preview_filtered_ms": max(row["p50_ms"] for row in cold_previews if row["filtered"]),
        }
        targets |= COLD_TARGETS
    if imported_result is not None:
        imported_previews = imported_result["previews"]
        figures |= {
            "imported_first_preview_ms": imported_result["first_preview"]["ms"],
            "imported_preview_unfiltered_ms": max(
                row["p50_ms"] for row in imported_previews if not row["filtered"]
            ),
            "imported_preview_filtered_ms": max(
                row["p50_ms"] for row in imported_previews if row["filtered"]
            ),
        }
        targets |= IMPORTED_TARGETS
    return {
        "machine": {"cpus": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30)},
        "vacuum_process": vacuum_process,
        "runs_per_preview": runs,
        "data_set": data_set,
        "figures": figures,
        "targets": targets,
        "missed": sorted(name for name, value in figures.items() if value > targets[name]),
        "load_average": {"before": load_before, "after": load_after},
        "cold": cold_result,
        "imported": imported_result,
        "previews": previews,
        "campaign": campaign,
        "slowest_preview": {"audience": slowest["audience"], "p50_ms": slowest["p50_ms"], "plan": plan},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=BENCH_DSN)
    parser.add_argument("--cold", action="store_true", help="measure right after a load first")
    parser.add_argument(
        "--imported", action="store_true", help="measure right after an import through the API first"
    )
    parser.add_argument(
        "--no-vacuum-process",
        dest="vacuum_process",
        action="store_false",
        help="without the owner's vacuum process (the previews then wait for autovacuum)",
    )
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs of each preview (p50 of them)")
    args = parser.parse_args()
    result = asyncio.run(run(args.dsn, args.cold, args.vacuum_process, args.runs, args.imported))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps({k: result[k] for k in ("data_set", "figures", "targets", "missed", "campaign")}, indent=2)
    )
    print(f"slowest preview {result['slowest_preview']['audience']}:\n{result['slowest_preview']['plan']}")


if __name__ == "__main__":
    main()
