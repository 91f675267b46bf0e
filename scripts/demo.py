"""``make demo``: a real campaign through the whole stack, on this machine.

Starts the Twilio simulator and the four services against the local RabbitMQ and PostgreSQL,
creates a demo tenant (a salon with ~5,000 customers and their booking history), previews the
audience, runs a campaign while showing its live progress, and prints a summary with where the
per-recipient log and CSV are.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from scripts.demo_data import generate
from shared.settings import DEVELOPMENT_OPERATOR_TOKEN, get_settings
from tools.stack import ROOT, Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

console = Console()
OUT_DIR = ROOT / "var" / "demo"
TEMPLATE = (
    "Hi {customer_first_name}! Spring is here at {business_name} — book your next visit this month "
    "and get 15% off any treatment. Reply STOP to opt out."
)
BATCH = 10_000


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    if response.status_code >= 400:
        raise SystemExit(f"{path} answered {response.status_code}: {response.text}")
    result: dict[str, Any] = response.json()
    return result


async def create_tenant(stack: Stack, operator_token: str, rate: int) -> tuple[str, str, str]:
    account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    async with SimulatorAdmin(stack.simulator_url) as sim:
        await sim.register_account(account_sid, auth_token)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {operator_token}"
        created = await post(
            client,
            "/v1/operator/tenants",
            {
                "name": "Bloom & Co. Salons (demo)",
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
            await post(client, f"/v1/booking/{kind}:upsert", body)
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


def run_cli(*args: str, api_url: str, api_key: str, timeout_s: float = 900) -> None:
    env = {**os.environ, "WCE_API_URL": api_url, "WCE_API_KEY": api_key}
    try:
        subprocess.run([sys.executable, "-m", "wce_cli", *args], env=env, check=False, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        console.print(f"[red]wce_cli {args[0]} did not finish within {timeout_s:.0f}s[/]")


async def demo(args: argparse.Namespace) -> None:
    settings = get_settings()
    # The settings keep only the token's digest; the demo's own requests need the token itself.
    operator_token = os.environ.get("WCE_OPERATOR_TOKEN", DEVELOPMENT_OPERATOR_TOKEN)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    env = {
        "WCE_DATABASE_URL": settings.database_url,
        "WCE_AMQP_URL": settings.amqp_url,
        "WCE_OPERATOR_TOKEN": operator_token,
        "WCE_LOG_LEVEL": "WARNING",
    }
    stack = Stack(env=env, log_dir=OUT_DIR / "logs", senders=2)
    console.rule("WhatsApp campaign engine — demo")
    console.print("Starting the Twilio simulator and the four services …")
    stack.start()
    try:
        tenant_id, api_key, account_sid = await create_tenant(stack, operator_token, args.rate)
        console.print(f"Tenant [bold]{tenant_id}[/] created (rate {args.rate} messages/s)")
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=120) as client:
            client.headers["Authorization"] = f"Bearer {api_key}"
            counts = await import_bookings(client)
            console.print("Booking data imported: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
            show_preview(await post(client, "/v1/audiences/preview", {"segment": "all_customers"}))
            campaign = await post(
                client,
                "/v1/campaigns",
                {"name": "Spring offer", "template": {"body": TEMPLATE}, "start": True},
            )
        console.print(f"Campaign [bold]{campaign['id']}[/] started; live progress:")
        run_cli("progress", campaign["id"], api_url=stack.tracker_url, api_key=api_key)
        progress = await wait_for_delivery_reports(stack, api_key, campaign["id"])
        csv_path = OUT_DIR / f"campaign-{campaign['id']}.csv"
        run_cli(
            "export-csv",
            campaign["id"],
            "--output",
            str(csv_path),
            "--bom",
            api_url=stack.tracker_url,
            api_key=api_key,
        )
        async with SimulatorAdmin(stack.simulator_url) as sim:
            stats = await sim.stats(account_sid)
        summarize(progress, stats, csv_path, stack, campaign["id"])
        if progress["state"] != "completed":
            raise SystemExit(f"the campaign ended {progress['state']}, not completed")
    finally:
        if args.keep_running:
            console.print(
                f"Stack left running (API {stack.api_url}, tracker {stack.tracker_url}); Ctrl-C stops it."
            )
            try:
                await asyncio.Event().wait()  # until Ctrl-C
            finally:
                stack.stop()
        else:
            stack.stop()


def summarize(
    progress: dict[str, Any], stats: dict[str, Any], csv_path: Path, stack: Stack, campaign_id: str
) -> None:
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
    console.print(
        f"Per-recipient log API: {stack.tracker_url}/v1/campaigns/{campaign_id}/recipients",
        soft_wrap=True,
        highlight=False,
    )
    console.print(f"Service logs: {OUT_DIR / 'logs'}", soft_wrap=True, highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=250, help="the demo tenant's messages per second")
    parser.add_argument("--keep-running", action="store_true", help="leave the stack running afterwards")
    asyncio.run(demo(parser.parse_args()))


if __name__ == "__main__":
    main()
