"""No tenant can stall another: a small campaign beside a noisy neighbour, and a rate-limited
campaign on a busy machine.

- Neighbour: a 100-recipient campaign of a tenant at 80/s, alone, then while another tenant
  sends ``--noisy`` messages (default 100,000) without a rate limit. Reported: its first send
  and its last send after the start request (the simulator's accept times), alone and beside
  the neighbour. Targets: first send within 1 s, completion within 1.5× the time alone.
- Busy machine: a campaign at 400/s (``--busy-seconds`` of messages, default 25 s), on a quiet
  machine, then beside two processes that keep both cores busy. Reported: the time to the last
  send, the busiest one-second window, the mean rate between the first and the last send (as
  the simulator counted them) and the number of messages handed back as late. Targets: within
  1.5× of the quiet time, never above 400 in a second, the mean within 2 % of 400.

Each figure is the median of ``--runs`` runs (default 3). Results go to
``bench/results/noisy_neighbour.json``.

    python -m bench.noisy_neighbour [--noisy 100000] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg

from bench.harness import (
    isolated_stack,
    new_tenant,
    seed,
    sent_count,
    settle_callbacks,
    start_campaign,
    wait_sent,
    write_results,
)
from tools.stack import ROOT, Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

RESULTS = ROOT / "bench" / "results" / "noisy_neighbour.json"
SMALL = 100
SMALL_RATE = 80
BUSY_RATE = 400


async def late_handbacks(pool: asyncpg.Pool, campaign_id: uuid.UUID) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM message_events WHERE campaign_id = $1 AND detail = 'not sent: late'",
            campaign_id,
        )
    )


async def timed_campaign(
    stack: Stack, pool: asyncpg.Pool, rate: int, total: int, offset: list[int], timeout_s: float
) -> dict[str, Any]:
    """Run one campaign of a new tenant; when its sends happened, by the simulator's clock."""
    tenant_id, api_key, account_sid = await new_tenant(stack, rate)
    await seed(pool, tenant_id, total, offset[0])
    offset[0] += total
    started = time.time()
    campaign_id = await start_campaign(stack, api_key)
    await wait_sent(pool, campaign_id, total, timeout_s, poll_s=0.1)
    async with SimulatorAdmin(stack.simulator_url) as sim:
        stats = await sim.stats(account_sid)
    return {
        "first_send_s": round(stats["first_at"] - started, 3),
        "last_send_s": round(stats["last_at"] - started, 3),
        "max_in_any_second": stats["max_in_any_second"],
        "mean_per_s": round((stats["accepted_total"] - 1) / (stats["last_at"] - stats["first_at"]), 1),
        "late_handbacks": await late_handbacks(pool, campaign_id),
        "account_sid": account_sid,
    }


async def neighbour(
    stack: Stack, pool: asyncpg.Pool, runs: int, noisy: int, offset: list[int]
) -> dict[str, Any]:
    alone, beside = [], []
    for _ in range(runs):
        alone.append(await timed_campaign(stack, pool, SMALL_RATE, SMALL, offset, timeout_s=60))
        print(f"  alone: {alone[-1]}", flush=True)
        noisy_id, noisy_key, noisy_sid = await new_tenant(stack, None)
        await seed(pool, noisy_id, noisy, offset[0])
        offset[0] += noisy
        noisy_campaign = await start_campaign(stack, noisy_key)
        # Start the small campaign once the neighbour is in full flow.
        await wait_sent(pool, noisy_campaign, min(5_000, noisy // 10), timeout_s=300, poll_s=0.1)
        beside.append(await timed_campaign(stack, pool, SMALL_RATE, SMALL, offset, timeout_s=300))
        beside[-1]["neighbour_sent_meanwhile"] = await sent_count(pool, noisy_campaign)
        print(f"  beside a neighbour: {beside[-1]}", flush=True)
        await wait_sent(pool, noisy_campaign, noisy, timeout_s=1800, poll_s=0.1)
        await settle_callbacks(stack, noisy_sid)
    alone_last = statistics.median(r["last_send_s"] for r in alone)
    beside_last = statistics.median(r["last_send_s"] for r in beside)
    return {
        "small_recipients": SMALL,
        "small_rate_per_s": SMALL_RATE,
        "neighbour_recipients": noisy,
        "alone": strip(alone),
        "beside_neighbour": strip(beside),
        "median_first_send_s": {
            "alone": statistics.median(r["first_send_s"] for r in alone),
            "beside_neighbour": statistics.median(r["first_send_s"] for r in beside),
        },
        "median_last_send_s": {"alone": alone_last, "beside_neighbour": beside_last},
        "slowdown": round(beside_last / alone_last, 2),
    }


def strip(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in run.items() if k != "account_sid"} for run in runs]


def busy_processes(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


async def busy_machine(
    stack: Stack, pool: asyncpg.Pool, runs: int, seconds: int, offset: list[int]
) -> dict[str, Any]:
    total = BUSY_RATE * seconds
    quiet, busy = [], []
    for _ in range(runs):
        quiet.append(await timed_campaign(stack, pool, BUSY_RATE, total, offset, timeout_s=seconds * 20))
        print(f"  quiet: {quiet[-1]}", flush=True)
        burners = busy_processes(os.cpu_count() or 2)
        try:
            busy.append(await timed_campaign(stack, pool, BUSY_RATE, total, offset, timeout_s=seconds * 20))
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
        print(f"  busy: {busy[-1]}", flush=True)
        await settle_callbacks(stack, busy[-1]["account_sid"])
    quiet_last = statistics.median(r["last_send_s"] for r in quiet)
    busy_last = statistics.median(r["last_send_s"] for r in busy)
    return {
        "rate_per_s": BUSY_RATE,
        "recipients": total,
        "busy_processes": os.cpu_count() or 2,
        "quiet": strip(quiet),
        "busy": strip(busy),
        "median_last_send_s": {"quiet": quiet_last, "busy": busy_last},
        "median_mean_per_s": {
            "quiet": statistics.median(r["mean_per_s"] for r in quiet),
            "busy": statistics.median(r["mean_per_s"] for r in busy),
        },
        "slowdown": round(busy_last / quiet_last, 2),
        "max_in_any_second": max(r["max_in_any_second"] for r in quiet + busy),
    }


def targets(report: dict[str, Any]) -> dict[str, bool]:
    checks: dict[str, bool] = {}
    if "neighbour" in report:
        n = report["neighbour"]
        checks["first_send_within_1s_beside_neighbour"] = n["median_first_send_s"]["beside_neighbour"] <= 1.0
        checks["completes_within_1_5x_alone"] = n["slowdown"] <= 1.5
    if "busy_machine" in report:
        b = report["busy_machine"]
        checks["busy_400_within_1_5x_quiet"] = b["slowdown"] <= 1.5
        checks["busy_never_above_rate"] = b["max_in_any_second"] <= BUSY_RATE
        checks["busy_mean_within_2pct"] = b["median_mean_per_s"]["busy"] >= BUSY_RATE * 0.98
    return checks


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"runs": args.runs}
    async with isolated_stack("wce-bench-noisy-") as (stack, pool, log_dir):
        report["logs"] = str(log_dir)
        stack.start()
        offset = [1_000_000]
        if "neighbour" in args.only:
            print("small campaign beside a noisy neighbour", flush=True)
            report["neighbour"] = await neighbour(stack, pool, args.runs, args.noisy, offset)
        if "busy" in args.only:
            print(f"{BUSY_RATE}/s on a busy machine", flush=True)
            report["busy_machine"] = await busy_machine(stack, pool, args.runs, args.busy_seconds, offset)
    report["load_average"] = os.getloadavg()
    report["targets"] = targets(report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--noisy", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--busy-seconds", type=int, default=25)
    parser.add_argument(
        "--quick", action="store_true", help="one run, a 20,000-message neighbour, 10 s at 400/s"
    )
    parser.add_argument(
        "--only",
        default="neighbour,busy",
        type=lambda value: set(value.split(",")),
        help="comma-separated parts to run: neighbour, busy (default: both)",
    )
    args = parser.parse_args()
    if args.quick:
        args.noisy, args.runs, args.busy_seconds = 20_000, 1, 10
    write_results(RESULTS, asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
