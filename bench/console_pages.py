"""Console benchmark: how long the web console takes to answer its pages at the 1M data set.

On the data of ``bench.generate_bookings`` (one tenant with 1,000,000 customers and 5,000,000
appointments; generated first when missing) it adds what a busy tenant's console shows: a
completed campaign to every customer with a valid number (about 980,000 recipients, in the states
such a campaign ends in), 40 small campaigns and 5,000 suppressed numbers. It then runs the
segmenter, the tracker and the console as processes against that database and a broker vhost of
its own, signs in, and times each page (wall time of the request from a client on the same
machine, which is the console's own time plus the API calls it makes), ``RUNS`` times, reporting
the median and the slowest. The target is 300 ms for every page but the audience preview.

Results go to ``bench/results/console_pages.json``.

    python -m bench.console_pages [--dsn postgresql://…/wce_bench]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from bench.generate_bookings import BENCH_DSN, BIG_TENANT, generate, loaded
from shared.apikeys import display_prefix, hash_api_key, new_api_key
from tools.stack import ManagedProcess, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "console_pages.json"
CUSTOMERS = 1_000_000
APPOINTMENTS = 5_000_000
RUNS = 7
TARGET_MS = 300
BIG_CAMPAIGN = uuid.UUID("00000000-0000-4000-8000-00000000c0de")
SMALL_CAMPAIGNS = 40
SUPPRESSED = 5_000

CAMPAIGN = """
INSERT INTO campaigns (id, tenant_id, name, kind, audience, template, state, total,
                       created_at, started_at, completed_at)
VALUES ($1, $2, $3, 'campaign', '{"segment": "all_customers"}', '{"body": "Hi {customer_first_name}!"}',
        'completed', $4, now() - $5 * interval '1 hour', now() - $5 * interval '1 hour',
        now() - $5 * interval '1 hour' + interval '20 minutes')
"""
# The states a finished campaign's recipients end in, in these shares of a hundred.
RECIPIENTS = """
INSERT INTO recipients (tenant_id, campaign_id, customer_id, phone_e164, state, attempts, error_code,
                        twilio_sid, sent_at, delivered_at, read_at, failed_at)
SELECT c.tenant_id, $2::uuid, c.id, c.phone_e164, s.state, 1,
       CASE WHEN s.state IN ('failed', 'undelivered') THEN 63016 END,
       CASE WHEN s.state <> 'failed' THEN 'SM' || md5(($2::uuid)::text || c.id::text) END,
       now() - interval '1 hour',
       CASE WHEN s.state IN ('delivered', 'read') THEN now() - interval '59 minutes' END,
       CASE WHEN s.state = 'read' THEN now() - interval '50 minutes' END,
       CASE WHEN s.state IN ('failed', 'undelivered') THEN now() - interval '59 minutes' END
FROM (SELECT DISTINCT ON (phone_e164) id, tenant_id, phone_e164 FROM customers
      WHERE tenant_id = $1 AND phone_e164 IS NOT NULL ORDER BY phone_e164, id LIMIT $3) c
CROSS JOIN LATERAL (
    SELECT CASE WHEN c.id % 100 < 55 THEN 'read' WHEN c.id % 100 < 93 THEN 'delivered'
                WHEN c.id % 100 < 97 THEN 'sent' WHEN c.id % 100 < 99 THEN 'undelivered'
                ELSE 'failed' END AS state
) s
"""
SUPPRESS = """
INSERT INTO suppressions (tenant_id, phone_e164, source, reason)
SELECT $1, '+1555' || lpad(g::text, 7, '0'), 'import', 'benchmark' FROM generate_series(1, $2) g
ON CONFLICT DO NOTHING
"""


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


async def _seed(dsn: str) -> dict[str, Any]:
    """The campaigns and suppressions of a busy tenant (kept from an earlier run when complete)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM api_keys WHERE tenant_id = $1", BIG_TENANT)
        began = time.monotonic()
        seeded = await conn.fetchval(
            "SELECT count(*) FROM campaigns WHERE tenant_id = $1 AND state = 'completed'", BIG_TENANT
        )
        if seeded != SMALL_CAMPAIGNS + 1:
            await _campaigns(conn)
        total = await conn.fetchval("SELECT total FROM campaigns WHERE id = $1", BIG_CAMPAIGN)
        key = new_api_key()
        await conn.execute(
            "INSERT INTO api_keys (tenant_id, key_hash, prefix) VALUES ($1, $2, $3)",
            BIG_TENANT,
            hash_api_key(key),
            display_prefix(key),
        )
        first = await conn.fetchval("SELECT min(id) FROM recipients WHERE campaign_id = $1", BIG_CAMPAIGN)
        return {"key": key, "recipients": total, "first_recipient": first, "seed_s": time.monotonic() - began}
    finally:
        await conn.close()


async def _campaigns(conn: asyncpg.Connection) -> None:
    """A completed campaign to every customer, 40 small ones and 5,000 suppressed numbers."""
    await conn.execute("DELETE FROM campaigns WHERE tenant_id = $1", BIG_TENANT)
    await conn.execute(CAMPAIGN, BIG_CAMPAIGN, BIG_TENANT, "Everyone, spring offer", 0, 30)
    await conn.execute(RECIPIENTS, BIG_TENANT, BIG_CAMPAIGN, CUSTOMERS)
    total = await conn.fetchval("SELECT count(*) FROM recipients WHERE campaign_id = $1", BIG_CAMPAIGN)
    await conn.execute("UPDATE campaigns SET total = $2 WHERE id = $1", BIG_CAMPAIGN, total)
    for n in range(SMALL_CAMPAIGNS):
        small = uuid.uuid4()
        await conn.execute(CAMPAIGN, small, BIG_TENANT, f"Reminder {n}", 0, 40 + n)
        await conn.execute(RECIPIENTS, BIG_TENANT, small, 100)
        await conn.execute("UPDATE campaigns SET total = 100 WHERE id = $1", small)
    await conn.execute(SUPPRESS, BIG_TENANT, SUPPRESSED)
    await conn.execute("ANALYZE recipients")
    await conn.execute("ANALYZE campaigns")


async def _time(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    timings = []
    for _ in range(RUNS):
        began = time.perf_counter()
        response = await client.get(path)
        timings.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
    return {
        "page": path,
        "p50_ms": round(statistics.median(timings), 1),
        "max_ms": round(max(timings), 1),
        "runs_ms": [round(t, 1) for t in timings],
    }


async def _sign_in(client: httpx.AsyncClient, key: str) -> None:
    form = await client.get("/signin")
    match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert match
    answer = await client.post("/signin", data={"csrf_token": match.group(1), "credential": key})
    assert answer.status_code == 303, answer.text[:300]


async def run(dsn: str) -> dict[str, Any]:
    if not await loaded(dsn, CUSTOMERS):
        await generate(dsn, CUSTOMERS, APPOINTMENTS)
    seeded = await _seed(dsn)
    vhost = dsn.rsplit("/", 1)[1]
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    api_port, tracker_port, console_port = free_port(), free_port(), free_port()
    env = {
        "WCE_ENVIRONMENT": "development",
        "WCE_DATABASE_URL": dsn,
        "WCE_AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "WCE_SEGMENTER_PORT": str(api_port),
        "WCE_TRACKER_PORT": str(tracker_port),
        "WCE_PUBLIC_BASE_URL": f"http://127.0.0.1:{tracker_port}",
        # Nothing answers here: the wizard shows "no approved templates" at once.
        "WCE_TWILIO_CONTENT_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "WCE_CREDITS_ENABLED": "false",
        "WCE_RATE_LIMITS_ENABLED": "false",
        "WCE_LOG_LEVEL": "WARNING",
        "WCE_CONSOLE_PORT": str(console_port),
        "WCE_CONSOLE_API_URL": f"http://127.0.0.1:{api_port}",
        "WCE_CONSOLE_TRACKER_URL": f"http://127.0.0.1:{tracker_port}",
        "WCE_CONSOLE_COOKIE_SECURE": "false",
    }
    logs = Path(tempfile.mkdtemp(prefix="wce-console-bench-"))
    processes = [ManagedProcess("services.segmenter", env, f"http://127.0.0.1:{api_port}/healthz", logs)]
    try:
        processes[0].wait_healthy(180)
        processes.append(
            ManagedProcess("services.tracker", env, f"http://127.0.0.1:{tracker_port}/healthz", logs)
        )
        processes.append(
            ManagedProcess("services.console", env, f"http://127.0.0.1:{console_port}/healthz", logs)
        )
        for process in processes[1:]:
            process.wait_healthy(180)
        big = f"/campaigns/{BIG_CAMPAIGN}"
        pages = [
            "/campaigns",
            "/campaigns?state=completed&q=reminder",
            big,
            f"{big}?state=failed",
            f"{big}?error_code=63016",
            f"{big}?after={seeded['first_recipient'] + 500_000}",
            f"{big}/recipients/{seeded['first_recipient']}",
            "/campaigns/new",
            "/suppressions",
            "/suppressions?q=%2B15550000042",
            "/credits",
            "/settings",
        ]
        load_before = _load_average()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{console_port}", timeout=120) as client:
            await _sign_in(client, seeded["key"])
            for path in pages:  # warm every connection pool and plan cache once
                await client.get(path)
            results = [await _time(client, path) for path in pages]
            csv_began = time.perf_counter()
            async with client.stream("GET", f"{big}/recipients.csv") as response:
                size = sum([len(chunk) async for chunk in response.aiter_raw()])
            csv_s = time.perf_counter() - csv_began
        load_after = _load_average()
    finally:
        for process in reversed(processes):
            process.stop()
        _rabbitmqctl("delete_vhost", vhost)
    return {
        "machine": {"cpus": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30)},
        "data_set": {
            "customers": CUSTOMERS,
            "appointments": APPOINTMENTS,
            "big_campaign_recipients": seeded["recipients"],
        },
        "pages": results,
        "target_ms": TARGET_MS,
        "missed": [row["page"] for row in results if row["p50_ms"] > TARGET_MS],
        "csv_export": {"bytes": size, "seconds": round(csv_s, 1)},
        "load_average": {"before": load_before, "after": load_after},
        "logs": str(logs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=BENCH_DSN)
    args = parser.parse_args()
    result = asyncio.run(run(args.dsn))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "pages"}, indent=2))
    for row in result["pages"]:
        print(f"{row['p50_ms']:>8.1f} ms p50 {row['max_ms']:>8.1f} ms max  {row['page']}")


if __name__ == "__main__":
    main()
