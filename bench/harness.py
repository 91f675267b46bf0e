"""What the engine benchmarks share: a stack on a database and broker vhost of their own, tenants
on simulator accounts of their own, seeded customers, a campaign started and waited for, the CPU
each part of the system spent, and the results file."""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import asyncpg
import httpx
import psutil

from shared.schema import migrate_dsn
from tools.stack import Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

BASE_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BASE_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
OPERATOR_TOKEN = "bench-operator-token-of-the-benchmarks-only"
DONE_STATES = ("sent", "delivered", "read")


class Environment:
    """A database and a broker vhost of its own, removed afterwards."""

    def __init__(self) -> None:
        self.name = f"wce_bench_{uuid.uuid4().hex[:8]}"
        self.database_url = urlunparse(urlparse(BASE_DATABASE_URL)._replace(path=f"/{self.name}"))
        self.amqp_url = urlunparse(urlparse(BASE_AMQP_URL)._replace(path=f"/{self.name}"))

    def create(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.name], check=True, capture_output=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )

    def destroy(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.name], capture_output=True)
        subprocess.run(
            ["psql", BASE_DATABASE_URL, "-q", "-c", f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'],
            capture_output=True,
        )

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "WCE_ENVIRONMENT": "development",
            "WCE_DATABASE_URL": self.database_url,
            "WCE_AMQP_URL": self.amqp_url,
            "WCE_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "WCE_LOG_LEVEL": "WARNING",
            **extra,
        }


@asynccontextmanager
async def isolated_stack(
    log_prefix: str, senders: int = 2
) -> AsyncIterator[tuple[Stack, asyncpg.Pool, Path]]:
    """A migrated environment of its own, the stack on it (not started: the caller starts it, so it
    can measure something first) and a pool; all stopped and removed afterwards."""
    environment = Environment()
    environment.create()
    try:
        await migrate_dsn(environment.database_url)
        log_dir = Path(tempfile.mkdtemp(prefix=log_prefix))
        stack = Stack(env=environment.env(), log_dir=log_dir, senders=senders)
        pool = await asyncpg.create_pool(environment.database_url, min_size=1, max_size=4)
        try:
            yield stack, pool, log_dir
        finally:
            await pool.close()
            stack.stop()
    finally:
        environment.destroy()


SERVER_PROCESSES = {"postgres": "postgres", "beam.smp": "rabbitmq"}


class CpuMeter:
    """CPU seconds spent by each part of the system during a run: every service process of the
    stack, the simulator, and the PostgreSQL and RabbitMQ server processes (all of them: other
    work on the machine's servers during the run is counted too). Less sensitive than a rate to
    what else the shared machine is doing, so it shows what a change saved."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._start: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        pids = {process.pid: name for name, process in self._stack.processes.items()}
        for process in psutil.process_iter(["name"]):
            name = pids.get(process.pid) or SERVER_PROCESSES.get(process.info["name"] or "")
            if name is None:
                continue
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            totals[name] = totals.get(name, 0.0) + times.user + times.system
        return totals

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._sample()
        self.seconds = {name: max(end[name] - self._start.get(name, 0.0), 0.0) for name in end}

    def ms_per_message(self, messages: int) -> dict[str, float]:
        per = {name: round(seconds * 1000 / messages, 3) for name, seconds in sorted(self.seconds.items())}
        per["total"] = round(sum(self.seconds.values()) * 1000 / messages, 3)
        return per


def latency_summary(latencies: list[float]) -> dict[str, float]:
    """Request count, p50, p99 and max (in ms) of request latencies given in seconds."""
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def median_cpu(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each part's CPU ms per message over the runs (``CpuMeter.ms_per_message``)."""
    return {name: round(statistics.median(run.get(name, 0.0) for run in runs), 3) for name in runs[0]}


async def new_tenant(stack: Stack, rate: int | None) -> tuple[str, str, str]:
    """(tenant id, API key, account sid) of a new tenant on a new simulator account."""
    account_sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    async with SimulatorAdmin(stack.simulator_url) as sim:
        await sim.register_account(account_sid, token)
    body: dict[str, Any] = {
        "name": f"bench {account_sid[-6:]}",
        "twilio_account_sid": account_sid,
        "twilio_auth_token": token,
        "whatsapp_from": "+14155238886",
        "credits": {"purchased": 10_000_000},
    }
    body.update({"unlimited_rate": True} if rate is None else {"rate_per_second": rate})
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as client:
        response = await client.post(
            "/v1/operator/tenants", json=body, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
    response.raise_for_status()
    data = response.json()
    return data["tenant"]["id"], data["api_key"], account_sid


async def seed(pool: asyncpg.Pool, tenant_id: str, count: int, offset: int) -> None:
    await pool.execute(
        """
        INSERT INTO customers (tenant_id, external_id, first_name, last_name, phone_raw, phone_e164)
        SELECT $1, 'c-' || i, 'First' || i, 'Last' || i, p, p
        FROM generate_series($2::int, $3::int) AS i,
             LATERAL (SELECT '+1415' || lpad(i::text, 7, '0')) AS x(p)
        """,
        uuid.UUID(tenant_id),
        offset,
        offset + count - 1,
    )


async def settle_callbacks(stack: Stack, account_sid: str) -> None:
    """Let the run's status callbacks drain, so the next run does not share the machine with them."""
    async with SimulatorAdmin(stack.simulator_url) as sim:
        await sim.wait_callbacks_settled(account_sid, timeout_s=600)
    await asyncio.sleep(2)


async def start_campaign(stack: Stack, api_key: str) -> uuid.UUID:
    """A campaign to every customer of the key's tenant, started."""
    async with httpx.AsyncClient(
        base_url=stack.api_url, timeout=120, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        response = await client.post(
            "/v1/campaigns",
            json={"name": "bench", "template": {"body": "Hi {customer_first_name}!"}, "start": True},
        )
    response.raise_for_status()
    return uuid.UUID(response.json()["id"])


async def sent_count(pool: asyncpg.Pool, campaign_id: uuid.UUID) -> int:
    """Recipients of the campaign sent (or further: delivered, read)."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM recipients WHERE campaign_id = $1 AND state = ANY($2::text[])",
            campaign_id,
            list(DONE_STATES),
        )
    )


async def wait_sent(
    pool: asyncpg.Pool, campaign_id: uuid.UUID, total: int, timeout_s: float, poll_s: float = 0.2
) -> None:
    """Until ``total`` recipients of the campaign are sent; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = await sent_count(pool, campaign_id)
        if done >= total:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done}/{total} sent after {timeout_s}s")
        await asyncio.sleep(poll_s)


async def run_campaign(stack: Stack, pool: asyncpg.Pool, api_key: str, total: int, timeout_s: float) -> float:
    """Seconds from the start request to every recipient sent."""
    started = time.perf_counter()
    campaign_id = await start_campaign(stack, api_key)
    await wait_sent(pool, campaign_id, total, timeout_s - (time.perf_counter() - started))
    return time.perf_counter() - started


def write_results(path: Path, report: dict[str, Any]) -> None:
    """The report as ``path`` (under ``bench/results``), and on stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
