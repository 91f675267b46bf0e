"""``make demo``: a real campaign through the whole stack, on this machine.

Starts the Twilio simulator (with the development accounts of ``examples/simulator.json``) and
the four services against the local RabbitMQ and PostgreSQL, creates a demo tenant (a salon with
~5,000 customers and their booking history), previews the audience, runs a campaign while showing
its live progress, and prints a summary, the tenant's API key, where the per-recipient CSV and
the service logs of this run are, and how to go on exploring. ``--keep-running`` (``make demo
KEEP=1``) leaves the stack running; ``--clean`` (``make demo-clean``) removes what demos left:
their tenants (with their data), their broker queues and ``var/demo``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

from scripts.demo_data import generate
from shared import topology
from shared.settings import DEVELOPMENT_OPERATOR_TOKEN, ConsoleSettings, get_settings
from tools.stack import ROOT, Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

console = Console()
OUT_DIR = ROOT / "var" / "demo"
SIMULATOR_CONFIG = ROOT / "examples" / "simulator.json"
DEMO_TENANT_NAME = "Bloom & Co. Salons (demo)"
DEFAULT_CONSOLE_PORT = ConsoleSettings.model_fields["console_port"].default
TEMPLATE = (
    "Hi {customer_first_name}! Spring is here at {business_name} — book your next visit this month "
    "and get 15% off any treatment. Reply STOP to opt out."
)
BATCH = 10_000


# Answers that mean "not now" (a busy database, the tenant's previous bulk request still running,
# a rate limit): the demo waits as told and sends an idempotent request (an upsert, a preview)
# again, as a client should.
RETRYABLE = {409, 429, 503}
ATTEMPTS = 5


async def post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], *, idempotent: bool = False
) -> dict[str, Any]:
    attempts = ATTEMPTS if idempotent else 1
    for attempt in range(1, attempts + 1):
        response = await client.post(path, json=body)
        if response.status_code not in RETRYABLE or attempt == attempts:
            break
        wait_s = float(response.headers.get("Retry-After", "2"))
        console.print(f"[yellow]{path} answered {response.status_code}; again in {wait_s:.0f}s[/]")
        await asyncio.sleep(wait_s)
    if response.status_code >= 400:
        raise SystemExit(f"{path} answered {response.status_code}: {response.text}")
    result: dict[str, Any] = response.json()
    return result


def development_account() -> tuple[str, str]:
    """The simulator's first development account (the one `make run` knows too)."""
    account = json.loads(SIMULATOR_CONFIG.read_text())["accounts"][0]
    return account["account_sid"], account["auth_token"]


async def create_tenant(stack: Stack, operator_token: str, rate: int) -> tuple[str, str, str]:
    account_sid, auth_token = development_account()
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {operator_token}"
        created = await post(
            client,
            "/v1/operator/tenants",
            {
                "name": DEMO_TENANT_NAME,
                "business_name": "Bloom & Co.",
                "twilio_account_sid": account_sid,
                "twilio_auth_token": auth_token,
                "whatsapp_from": "+14155238886",
                "rate_per_second": rate,
                "timezone": "America/Los_Angeles",
                "default_region": "US",
                "credits": {"plan_monthly": 10_000},
            },
        )
    return created["tenant"]["id"], created["api_key"], account_sid


async def import_bookings(client: httpx.AsyncClient) -> dict[str, int]:
    data = generate()
    counts: dict[str, int] = {}
    for kind, rows in (
        ("services", data.services),
        ("locations", data.locations),
        ("staff", data.staff),
        ("customers", data.customers),
        ("appointments", data.appointments),
    ):
        for start in range(0, len(rows), BATCH):
            body: dict[str, Any] = {"rows": rows[start : start + BATCH]}
            if kind == "customers":
                body["invalid_phones"] = "flag"  # front-desk typos are kept and counted, not refused
            await post(client, f"/v1/booking/{kind}:upsert", body, idempotent=True)
        counts[kind] = len(rows)
    return counts


def show_preview(preview: dict[str, Any]) -> None:
    excluded = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in preview["excluded"].items())
    console.print(f"Audience [bold]all customers[/]: [bold]{preview['total']:,}[/] recipients ({excluded})")
    table = Table("name", "phone", "why", title="sample")
    for row in preview["sample"][:5]:
        table.add_row(row["name"], row["phone"], row["reason"])
    console.print(table)


async def wait_for_delivery_reports(
    stack: Stack, api_key: str, campaign_id: str, timeout_s: float = 60
) -> dict:
    """Delivery and read receipts arrive after sending; wait until none is outstanding."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=stack.tracker_url, timeout=10) as client:
        client.headers["Authorization"] = f"Bearer {api_key}"
        while True:
            progress: dict[str, Any] = (await client.get(f"/v1/campaigns/{campaign_id}/progress")).json()
            if not progress["counts"].get("sent") or time.monotonic() > deadline:
                return progress
            await asyncio.sleep(0.5)


def run_cli(*args: str, tracker_url: str, api_key: str, timeout_s: float = 900) -> None:
    env = {**os.environ, "WCE_TRACKER_URL": tracker_url, "WCE_API_KEY": api_key}
    try:
        subprocess.run([sys.executable, "-m", "wce_cli", *args], env=env, check=False, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        console.print(f"[red]wce_cli {args[0]} did not finish within {timeout_s:.0f}s[/]")


async def demo(args: argparse.Namespace) -> None:
    settings = get_settings()
    # The settings keep only the token's digest; the demo's own requests need the token itself.
    operator_token = os.environ.get("WCE_OPERATOR_TOKEN", DEVELOPMENT_OPERATOR_TOKEN)
    run_dir = OUT_DIR / "runs" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "WCE_DATABASE_URL": settings.database_url,
        "WCE_AMQP_URL": settings.amqp_url,
        "WCE_OPERATOR_TOKEN": operator_token,
        "WCE_LOG_LEVEL": "INFO",
    }
    stack = Stack(
        env=env,
        log_dir=run_dir / "logs",
        senders=2,
        simulator_args=["--config", str(SIMULATOR_CONFIG)],
        console=True,
    )
    console.rule("WhatsApp campaign engine — demo")
    console.print("Starting the Twilio simulator, the four services and the web console …")
    stack.start()
    try:
        tenant_id, api_key, account_sid = await create_tenant(stack, operator_token, args.rate)
        console.print(f"Tenant [bold]{tenant_id}[/] created (rate {args.rate} messages/s)")
        console.print(f"Its API key (shown once): {api_key}", soft_wrap=True, highlight=False, markup=False)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=120) as client:
            client.headers["Authorization"] = f"Bearer {api_key}"
            counts = await import_bookings(client)
            console.print("Booking data imported: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
            show_preview(
                await post(client, "/v1/audiences/preview", {"segment": "all_customers"}, idempotent=True)
            )
            campaign = await post(
                client,
                "/v1/campaigns",
                {"name": "Spring offer", "template": {"body": TEMPLATE}, "start": True},
            )
        console.print(f"Campaign [bold]{campaign['id']}[/] started; live progress:")
        run_cli("progress", campaign["id"], "--no-summary", tracker_url=stack.tracker_url, api_key=api_key)
        progress = await wait_for_delivery_reports(stack, api_key, campaign["id"])
        csv_path = run_dir / f"campaign-{campaign['id']}.csv"
        run_cli(
            "export-csv",
            campaign["id"],
            "--output",
            str(csv_path),
            "--bom",
            tracker_url=stack.tracker_url,
            api_key=api_key,
        )
        async with SimulatorAdmin(stack.simulator_url) as sim:
            stats = await sim.stats(account_sid)
        summarize(progress, stats, csv_path, run_dir)
        explain_next_steps(stack, api_key, campaign["id"], keep_running=args.keep_running)
        if progress["state"] != "completed":
            raise SystemExit(f"the campaign ended {progress['state']}, not completed")
        if args.keep_running:
            console.print("The stack keeps running; Ctrl-C stops it.")
            await asyncio.Event().wait()  # until Ctrl-C
    finally:
        stack.stop()


def summarize(progress: dict[str, Any], stats: dict[str, Any], csv_path: Path, run_dir: Path) -> None:
    table = Table("state", "recipients", title="Campaign result")
    for state, count in sorted(progress["counts"].items(), key=lambda item: -item[1]):
        if count:
            table.add_row(state, f"{count:,}")
    table.add_row("[bold]total[/]", f"[bold]{progress['total']:,}[/]")
    console.print(table)
    console.print(
        f"Twilio (simulator) accepted {stats['accepted_total']:,} messages; numbers messaged twice: "
        f"{len(stats['duplicates'])}; busiest second: {stats['max_in_any_second']} messages"
    )
    # Paths are printed unwrapped so they can be copied (and found by scripts).
    console.print(f"Per-recipient CSV: {csv_path}", soft_wrap=True, highlight=False)
    console.print(f"Service logs of this run: {run_dir / 'logs'}", soft_wrap=True, highlight=False)


def explain_next_steps(stack: Stack, api_key: str, campaign_id: str, *, keep_running: bool) -> None:
    """The commands to go on from here, with this demo's tenant."""
    lines = ["", "To keep exploring with the demo tenant:"]
    if keep_running:
        lines += [
            f"  export WCE_API_URL={stack.api_url} WCE_TRACKER_URL={stack.tracker_url} WCE_API_KEY={api_key}",
            f"  (per-recipient log API: {stack.tracker_url}/v1/campaigns/{campaign_id}/recipients)",
        ]
    else:
        lines += [
            "  make run                       # in another terminal: APIs on 8000/8001, console on 8004",
            f"  export WCE_API_KEY={api_key}",
        ]
    lines += [
        "  .venv/bin/wce campaigns list",
        f"  .venv/bin/wce logs {campaign_id} --state read",
        "  .venv/bin/wce shortcodes       # what a template may say",
    ]
    if not keep_running:
        lines.append("Or `make demo KEEP=1` to leave the demo's stack running.")
    lines.append("`make demo-clean` removes the demo tenants, their queues and var/demo.")
    # The console of `make run` listens on its default port; a stack left running has its own.
    console_url = stack.console_url if keep_running else f"http://127.0.0.1:{DEFAULT_CONSOLE_PORT}"
    where = "" if keep_running else " (after `make run`)"
    lines += [
        "",
        f"Web console{where}: {console_url}/signin",
        f"Sign in with the API key: {api_key}",
    ]
    console.print("\n".join(lines), soft_wrap=True, highlight=False, markup=False)


async def clean() -> None:
    """Remove what demos left: their tenants (the rows of everything they own go with them), the
    tenants' broker queues, and the output folder."""
    settings = get_settings()
    connection = await asyncpg.connect(settings.database_url)
    try:
        tenant_ids = [
            str(row["id"])
            for row in await connection.fetch(
                "DELETE FROM tenants WHERE name = $1 RETURNING id", DEMO_TENANT_NAME
            )
        ]
    except asyncpg.UndefinedTableError:
        tenant_ids = []  # never migrated: no demo ran against this database
    finally:
        await connection.close()
    queues = [
        name
        for tenant_id in tenant_ids
        for name in (
            topology.dispatch_queue_name(tenant_id),
            topology.parked_queue_name(topology.dispatch_queue_name(tenant_id)),
        )
    ]
    if queues:
        broker = await aio_pika.connect(settings.amqp_url)
        async with broker:
            channel = await broker.channel()
            for name in queues:
                await channel.queue_delete(name)
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    console.print(
        f"Removed {len(tenant_ids)} demo tenant(s), {len(queues)} queue(s) and {OUT_DIR.relative_to(ROOT)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=250, help="the demo tenant's messages per second")
    parser.add_argument("--keep-running", action="store_true", help="leave the stack running afterwards")
    parser.add_argument("--clean", action="store_true", help="remove what demos left, then exit")
    args = parser.parse_args()
    try:
        asyncio.run(clean() if args.clean else demo(args))
    except KeyboardInterrupt:
        console.print("stopped")


if __name__ == "__main__":
    main()
